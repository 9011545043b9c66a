/*
 * vks-serve API: the acts on one credential that change it or hand out its secret, each one call
 * of the core operation `vks cred` makes (src/vks_cred.h), with the operator's own Vault client:
 *   POST   /api/v1/credentials/NAME/reveal    vks_cred_reveal (reason required; TOTP step-up)
 *   POST   /api/v1/credentials/NAME/restrict  vks_cred_restrict (the whole new lists)
 *   DELETE /api/v1/credentials/NAME           vks_cred_delete (confirm_username required)
 * Loop thread only.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve.h"

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
