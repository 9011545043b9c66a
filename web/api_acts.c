/*
 * vks-serve API: the acts on one credential that change it or hand out its secret, each one call
 * of the core operation `vks cred` makes (src/vks_cred.h), with the operator's own Vault client:
 *   POST   /api/v1/credentials/NAME/reveal    vks_cred_reveal (reason required; TOTP step-up)
 *   POST   /api/v1/credentials/NAME/restrict  vks_cred_restrict (the whole new lists)
 *   DELETE /api/v1/credentials/NAME           vks_cred_delete (confirm_username required)
 *   POST   /api/v1/credentials/NAME/reset     vks_cred_reset, scope NAME (reason required; TOTP
 *                                             step-up): the emergency reset of issue 13. Only one
 *                                             credential: --tenant / --all stay with the CLI.
 *                                             "rotate": the rotation that follows runs as a job
 *                                             (rotate.c), not on the loop
 * Loop thread only.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve.h"
#include "vks_cred_reset.h"

void sv_api_reveal(struct sv_req *r, const char *prefix, const char *name)
{
    if (!sv_csrf_ok(r))
        return;
    json_object *b = sv_body_json(r);
    const char *reason = NULL, *totp = NULL;
    if (!b || !sv_json_str(r, b, "reason", true, &reason) || !sv_json_str(r, b, "totp", false, &totp) ||
        (sv_stepup_needed(r->s, r->now) && !sv_stepup(r, totp))) {
        json_object_put(b);
        return;
    }
    struct vks_cred_ctx ctx;
    struct vks_err e;
    vks_err_clear(&e);
    vks_secret pw = VKS_SECRET_EMPTY;
    int64_t version = 0;
    vks_status st = sv_ctx(r, prefix, &ctx, &e);
    if (st == VKS_OK)
        st = vks_cred_reveal(&ctx, name, reason, &pw, &version, &e);
    json_object_put(b);
    if (st != VKS_OK) {
        vks_secret_free(&pw);
        if (st == VKS_E_INVALID_INPUT && strstr(e.msg, "reason"))
            {
                sv_send_error(r, 400, "invalid_input", "reason", "%s", e.msg);
                return;
            }
        {
            sv_send_status(r, st, &e);
            return;
        }
    }
    json_object *o = json_object_new_object();
    json_object_object_add(o, "name", json_object_new_string(name));
    json_object_object_add(o, "version", json_object_new_int64(version));
    json_object_object_add(o, "hide_after_seconds", json_object_new_int(sv_cfg->reveal_seconds));
    sv_send_json_secret(r, 200, o, &pw);
    vks_secret_free(&pw);
}

/* "domains": the full new list (or "all_domains": true); the change is computed against the
 * current record: lift, removals, additions, as `vks cred restrict` applies them */
void sv_api_restrict(struct sv_req *r, const char *prefix, const char *name)
{
    if (!sv_csrf_ok(r))
        return;
    json_object *b = sv_body_json(r);
    struct vks_cred_restrictions want;
    if (!b || !sv_body_lists(r, b, &want)) {
        json_object_put(b);
        return;
    }
    json_object_put(b);
    struct vks_cred_ctx ctx;
    struct vks_err e;
    vks_err_clear(&e);
    struct vks_cred_record cur, out;
    memset(&cur, 0, sizeof cur);
    memset(&out, 0, sizeof out);
    vks_status st = sv_ctx(r, prefix, &ctx, &e);
    if (st == VKS_OK)
        st = vks_cred_show(&ctx, name, &cur, &e);
    if (st == VKS_OK) {
        const struct vks_cred_list *cl[2] = { &cur.restrictions.domains, &cur.restrictions.hosts };
        const struct vks_cred_list *wl[2] = { &want.domains, &want.hosts };
        const char **add[2], **rm[2];
        size_t nadd[2] = { 0, 0 }, nrm[2] = { 0, 0 };
        for (int k = 0; k < 2; k++) {
            add[k] = calloc(wl[k]->n + 1, sizeof *add[k]);
            rm[k] = calloc(cl[k]->n + 1, sizeof *rm[k]);
            for (size_t i = 0; !wl[k]->all && i < cl[k]->n; i++) {
                bool keep = false;
                for (size_t j = 0; j < wl[k]->n; j++)
                    keep = keep || !strcmp(cl[k]->v[i], wl[k]->v[j]);
                if (!keep)
                    rm[k][nrm[k]++] = cl[k]->v[i];
            }
            for (size_t j = 0; j < wl[k]->n; j++)
                add[k][nadd[k]++] = wl[k]->v[j];
        }
        struct vks_cred_change ch = { .all_domains = want.domains.all, .all_hosts = want.hosts.all,
                                      .add_domains = add[0], .n_add_domains = nadd[0],
                                      .remove_domains = rm[0], .n_remove_domains = nrm[0],
                                      .add_hosts = add[1], .n_add_hosts = nadd[1],
                                      .remove_hosts = rm[1], .n_remove_hosts = nrm[1] };
        st = vks_cred_restrict(&ctx, name, &ch, &out, &e);
        for (int k = 0; k < 2; k++) {
            free(add[k]);
            free(rm[k]);
        }
    }
    vks_cred_restrictions_free(&want);
    vks_cred_record_free(&cur);
    if (st == VKS_OK)
        sv_send_json(r, 200, sv_record_json(&out, true), true);
    else
        sv_send_status(r, st, &e);
    vks_cred_record_free(&out);
}

void sv_api_delete(struct sv_req *r, const char *prefix, const char *name)
{
    if (!sv_csrf_ok(r))
        return;
    json_object *b = sv_body_json(r);
    const char *confirm = NULL;
    if (!b || !sv_json_str(r, b, "confirm_username", true, &confirm)) {
        json_object_put(b);
        return;
    }
    struct vks_cred_ctx ctx;
    struct vks_err e;
    vks_err_clear(&e);
    vks_status st = sv_ctx(r, prefix, &ctx, &e);
    if (st == VKS_OK)
        st = vks_cred_delete(&ctx, name, confirm, &e);
    json_object_put(b);
    if (st == VKS_E_INVALID_INPUT && strstr(e.msg, "confirm"))
        {
            sv_send_error(r, 400, "invalid_input", "confirm_username", "%s", e.msg);
            return;
        }
    if (st != VKS_OK)
        {
            sv_send_status(r, st, &e);
            return;
        }
    json_object *o = json_object_new_object();
    json_object_object_add(o, "deleted", json_object_new_string(name));
    sv_send_json(r, 200, o, true);
}

static json_object *reset_json(const struct vks_cred_reset_result *res, vks_status st, const struct vks_err *e)
{
    json_object *o = json_object_new_object(), *a = json_object_new_array();
    size_t already = 0;
    json_object_object_add(o, "result", json_object_new_string(st == VKS_OK ? "success" : "failure"));
    json_object_object_add(o, "code", json_object_new_string(vks_status_code(st)));
    json_object_object_add(o, "error", st == VKS_OK ? NULL : json_object_new_string(e->msg));
    json_object_object_add(o, "reset_id", res->reset_id[0] ? json_object_new_string(res->reset_id) : NULL);
    json_object_object_add(o, "scope", res->scope[0] ? json_object_new_string(res->scope) : NULL);
    for (size_t i = 0; i < res->n; i++) {
        const struct vks_cred_reset_item *it = &res->items[i];
        json_object *j = json_object_new_object();
        already += !strcmp(it->outcome, "already");
        json_object_object_add(j, "name", json_object_new_string(it->name));
        json_object_object_add(j, "outcome", json_object_new_string(it->outcome));
        json_object_object_add(j, "code", json_object_new_string(vks_status_code(it->status)));
        json_object_object_add(j, "error", it->error[0] ? json_object_new_string(it->error) : NULL);
        json_object_object_add(j, "new_version", it->new_version ? json_object_new_int64(it->new_version) : NULL);
        json_object_array_add(a, j);
    }
    /* the core counts an "already" as marked (nothing left to do); here marked is what this act did */
    json_object_object_add(o, "marked", json_object_new_int64((int64_t)(res->n_marked - already)));
    json_object_object_add(o, "already", json_object_new_int64((int64_t)already));
    json_object_object_add(o, "failed", json_object_new_int64((int64_t)res->n_failed));
    json_object_object_add(o, "rotated", json_object_new_int64((int64_t)res->n_rotated));
    json_object_object_add(o, "record_written", json_object_new_boolean(res->record_written));
    json_object_object_add(o, "record_seq", res->record_seq ? json_object_new_int64(res->record_seq) : NULL);
    json_object_object_add(o, "credentials", a);
    return o;
}

/* "rotate": the rotation that ends the reset, as a job (rotate.c); o gets "job" or "rotate_error" */
static void start_rotation(struct sv_req *r, const char *prefix, const char *name, json_object *o)
{
    char id[33] = "";
    const char *why = NULL;
    bool started = sv_rotate_job(r, prefix, name, false, id, &why);
    json_object_object_add(o, "job", started ? json_object_new_string(id) : NULL);
    json_object_object_add(o, "rotate_error", started ? NULL : json_object_new_string(why));
}

/* The emergency reset of one credential: vks_cred_reset with scope NAME on the loop thread (the
 * marks and the control record are a few Vault round trips). With "rotate", and only once the
 * credential is marked and the record written (as the core's own rotate step), the rotation is the
 * same vks_cred_rotate started as a job like POST .../rotate, because its hook and SMTP test must
 * not hold the loop: the answer names the job. Destructive: CSRF, then a TOTP step-up as for a
 * reveal. A failure midway answers the core's status with the per-credential result attached. */
void sv_api_reset(struct sv_req *r, const char *prefix, const char *name)
{
    if (!sv_csrf_ok(r))
        return;
    json_object *b = sv_body_json(r);
    const char *reason = NULL, *totp = NULL;
    bool rotate = false;
    if (!b || !sv_json_str(r, b, "reason", false, &reason) || !sv_json_str(r, b, "totp", false, &totp) ||
        !sv_json_bool(r, b, "rotate", &rotate)) {
        json_object_put(b);
        return;
    }
    if (!reason || !*reason) {
        json_object_put(b);
        sv_send_error(r, 400, "invalid_input", "reason", "reason is required: why the credential is reset (audited)");
        return;
    }
    if (sv_stepup_needed(r->s, r->now) && !sv_stepup(r, totp)) {
        json_object_put(b);
        return;
    }
    struct vks_cred_ctx ctx;
    struct vks_err e;
    vks_err_clear(&e);
    struct vks_cred_reset_result res;
    memset(&res, 0, sizeof res);
    vks_status st = sv_ctx(r, prefix, &ctx, &e);
    if (st == VKS_OK) {
        struct vks_cred_reset_req q = { .scope = VKS_CRED_RESET_NAME, .name = name, .reason = reason };
        st = vks_cred_reset(&ctx, &q, &res, &e);
        if (st != VKS_OK && res.n == 0) {
            vks_cred_reset_result_free(&res);
            json_object_put(b);
            if (st == VKS_E_INVALID_INPUT && strstr(e.msg, "reason"))
                sv_send_error(r, 400, "invalid_input", "reason", "%s", e.msg);
            else
                sv_send_status(r, st, &e);
            return;
        }
        json_object *o = reset_json(&res, st, &e);
        if (rotate && st == VKS_OK && res.n_failed == 0 && res.record_written)
            start_rotation(r, prefix, name, o);
        vks_cred_reset_result_free(&res);
        json_object_put(b);
        sv_send_json(r, sv_status_http(st), o, true);
        return;
    }
    json_object_put(b);
    sv_send_status(r, st, &e);
}
