/*
 * vks-serve API: the credential endpoints, each one call of the core operation `vks cred` makes
 * for the same act (src/vks_cred.h), with the operator's own Vault client (sv_ctx):
 *   GET    /api/v1/credentials[?tenant=T&state=S]    vks_cred_list
 *   POST   /api/v1/credentials                       vks_cred_create (password in this answer only)
 *   GET    /api/v1/credentials/NAME                  vks_cred_show (+ fingerprint, + audit events)
 *   POST   /api/v1/credentials/NAME/reveal, /restrict, /reset, DELETE .../NAME   (api_acts.c)
 *   POST   /api/v1/credentials/NAME/rotate, GET /api/v1/jobs/ID          (rotate.c)
 *   GET    /api/v1/due[?within=30d]                  vks_cred_due_eval over vks_cred_list
 * Loop thread only.
 */
#include <event2/buffer.h>
#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve.h"

static void jset(json_object *o, const char *k, const char *v)
{
    json_object_object_add(o, k, v && v[0] ? json_object_new_string(v) : NULL);
}

static json_object *list_json(const struct vks_cred_list *l)
{
    if (l->all)
        return NULL;
    json_object *a = json_object_new_array();
    for (size_t i = 0; i < l->n; i++)
        json_object_array_add(a, json_object_new_string(l->v[i]));
    return a;
}

json_object *sv_record_json(const struct vks_cred_record *rec, bool full)
{
    char sum[64];
    vks_cred_summary(&rec->restrictions, sum, sizeof sum);
    json_object *o = json_object_new_object();
    jset(o, "name", rec->name);
    jset(o, "username", rec->username);
    jset(o, "state", rec->managed ? (rec->state[0] ? rec->state : "active") : "unmanaged");
    jset(o, "permissions", rec->restrictions_bad ? "unreadable restrictions (refused by the resolver)" : sum);
    json_object_object_add(o, "allowed_domains", list_json(&rec->restrictions.domains));
    json_object_object_add(o, "allowed_ips", list_json(&rec->restrictions.hosts));
    jset(o, "created", rec->created);
    jset(o, "rotated", rec->rotated);
    struct vks_cred_due d;
    vks_cred_due_eval(rec, time(NULL), 30 * 86400, VKS_CRED_DUE_DAYS, &d);
    char due[40] = "";
    if (d.status != VKS_CRED_DUE_INVALID)
        vks_cred_time(d.due, 0, due);
    jset(o, "due", rec->managed ? due : NULL);
    static const char *const ds[] = { "ok", "soon", "overdue", "invalid" };
    jset(o, "due_status", rec->managed ? ds[d.status] : NULL);
    jset(o, "owner", rec->owner);
    jset(o, "tenant", rec->tenant);
    if (!full)
        return o;
    jset(o, "relay", rec->relay);
    jset(o, "rotation_id", rec->rotation_id);
    json_object *rv; /* an emergency reset (issue 13): kept in custom_metadata as stored */
    bool has = rec->custom && json_object_object_get_ex((json_object *)rec->custom, "reset_id", &rv);
    jset(o, "reset_id", has ? json_object_get_string(rv) : NULL);
    has = rec->custom && json_object_object_get_ex((json_object *)rec->custom, "reset_at", &rv);
    jset(o, "reset_at", has ? json_object_get_string(rv) : NULL);
    json_object_object_add(o, "current_version", json_object_new_int64(rec->vault_version));
    json_object_object_add(o, "previous_version", rec->previous_version ? json_object_new_int64(rec->previous_version) : NULL);
    json_object *vs = json_object_new_array();
    for (size_t i = 0; i < rec->nversions; i++) {
        json_object *v = json_object_new_object();
        json_object_object_add(v, "version", json_object_new_int64(rec->versions[i].version));
        jset(v, "created", rec->versions[i].created);
        jset(v, "deleted", rec->versions[i].deleted);
        json_object_object_add(v, "destroyed", json_object_new_boolean(rec->versions[i].destroyed));
        json_object_array_add(vs, v);
    }
    json_object_object_add(o, "versions", vs);
    return o;
}

/* ?tenant=T lists the tenant's own prefix (<prefix>T/): the ACL boundary of tenant policies */
bool sv_tenant_prefix(struct sv_req *r, char *out, size_t cap)
{
    const char *t = sv_query(r, "tenant");
    const char *base = sv_cfg->prefix ? sv_cfg->prefix : VKS_CRED_DEFAULT_PREFIX;
    if (!t) {
        snprintf(out, cap, "%s", base);
        return true;
    }
    if (vks_cred_check_tenant(t, "tenant", NULL) != VKS_OK) {
        sv_send_error(r, 400, "invalid_input", "tenant", "tenant: a-z 0-9 . _ - only");
        return false;
    }
    snprintf(out, cap, "%s%s/", base, t);
    return true;
}

static void list(struct sv_req *r)
{
    char prefix[VKS_CRED_NAME_MAX + 1];
    if (!sv_tenant_prefix(r, prefix, sizeof prefix))
        return;
    struct vks_cred_ctx ctx;
    struct vks_err e;
    vks_err_clear(&e);
    struct vks_cred_record *recs = NULL;
    size_t n = 0;
    vks_status st = sv_ctx(r, prefix, &ctx, &e);
    if (st == VKS_OK)
        st = vks_cred_list(&ctx, &recs, &n, &e);
    sv_audit_read(r, "list", st, prefix, NULL);
    if (st != VKS_OK)
        {
            sv_send_status(r, st, &e);
            return;
        }
    const char *state = sv_query(r, "state"), *q = sv_query(r, "q");
    json_object *a = json_object_new_array();
    for (size_t i = 0; i < n; i++) {
        json_object *o = sv_record_json(&recs[i], false);
        const char *s = json_object_get_string(json_object_object_get(o, "state"));
        bool match = !q || strstr(recs[i].name, q) || strstr(recs[i].username, q);
        if ((!state || (s && !strcmp(s, state))) && match)
            json_object_array_add(a, o);
        else
            json_object_put(o);
    }
    vks_cred_records_free(recs, n);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "prefix", json_object_new_string(prefix));
    json_object_object_add(o, "credentials", a);
    sv_send_json(r, 200, o, true);
}

/* the lists of a create or restrict body: "domains"/"ips" arrays, "all_domains"/"all_ips" */
bool sv_body_lists(struct sv_req *r, json_object *b, struct vks_cred_restrictions *rs)
{
    const char **d = NULL, **ip = NULL;
    size_t nd = 0, nip = 0;
    bool ad = false, ai = false;
    if (!sv_json_bool(r, b, "all_domains", &ad) || !sv_json_bool(r, b, "all_ips", &ai) ||
        !sv_json_strs(r, b, "domains", &d, &nd) || !sv_json_strs(r, b, "ips", &ip, &nip)) {
        free(d);
        free(ip);
        return false;
    }
    memset(rs, 0, sizeof *rs);
    rs->domains.all = ad;
    rs->hosts.all = ai || nip == 0;
    struct vks_err e;
    vks_err_clear(&e);
    vks_status st = ad && nd ? vks_err_set(&e, VKS_E_INVALID_INPUT, "domains and all_domains exclude each other")
                   : !ad && !nd ? vks_err_set(&e, VKS_E_INVALID_INPUT, "domains: give at least one domain, or all_domains")
                   : ai && nip ? vks_err_set(&e, VKS_E_INVALID_INPUT, "ips and all_ips exclude each other")
                   : VKS_OK;
    const char *field = st != VKS_OK ? (strstr(e.msg, "ips") == e.msg ? "ips" : "domains") : NULL;
    for (size_t i = 0; st == VKS_OK && i < nd; i++)
        if ((st = vks_cred_list_add(&rs->domains, false, d[i], "domains", &e)) != VKS_OK)
            field = "domains";
    for (size_t i = 0; st == VKS_OK && i < nip; i++)
        if ((st = vks_cred_list_add(&rs->hosts, true, ip[i], "ips", &e)) != VKS_OK)
            field = "ips";
    free(d);
    free(ip);
    if (st != VKS_OK) {
        vks_cred_restrictions_free(rs);
        sv_send_error(r, 400, "invalid_input", field, "%s", e.msg);
        return false;
    }
    return true;
}

static void create(struct sv_req *r, const char *prefix)
{
    if (!sv_csrf_ok(r))
        return;
    json_object *b = sv_body_json(r);
    if (!b)
        return;
    const char *name, *user, *owner, *tenant, *relay, *direction = NULL;
    bool retrievable = false;
    struct vks_cred_restrictions rs;
    if (!sv_json_str(r, b, "name", true, &name) || !sv_json_str(r, b, "username", true, &user) ||
        !sv_json_str(r, b, "owner", false, &owner) || !sv_json_str(r, b, "tenant", false, &tenant) ||
        !sv_json_str(r, b, "relay", false, &relay) || !sv_json_str(r, b, "direction", false, &direction) ||
        !sv_json_bool(r, b, "retrievable", &retrievable)) {
        json_object_put(b);
        return;
    }
    bool inbound = direction && strcmp(direction, "inbound") == 0;
    if (direction && !inbound && strcmp(direction, "outbound") != 0) {
        sv_send_error(r, 400, "invalid_input", "direction", "%s", "direction must be \"outbound\" or \"inbound\"");
        json_object_put(b);
        return;
    }
    if (!sv_body_lists(r, b, &rs)) {
        json_object_put(b);
        return;
    }
    struct vks_cred_ctx ctx;
    struct vks_err e;
    vks_err_clear(&e);
    vks_secret pw = VKS_SECRET_EMPTY;
    int64_t version = 0;
    vks_status st = sv_ctx(r, prefix, &ctx, &e);
    if (st == VKS_OK) {
        struct vks_cred_create_req req = { .name = name, .username = user, .owner = owner, .tenant = tenant,
                                           .restrictions = &rs, .relay = relay, .inbound = inbound,
                                           .retrievable = retrievable };
        st = vks_cred_create(&ctx, &req, &pw, &version, &e);
    }
    if (version > 0) { /* written: the password is shown now, once, even if a later step failed */
        json_object *o = json_object_new_object();
        json_object_object_add(o, "name", json_object_new_string(name));
        json_object_object_add(o, "username", json_object_new_string(user));
        json_object_object_add(o, "version", json_object_new_int64(version));
        char sum[64];
        vks_cred_summary(&rs, sum, sizeof sum);
        json_object_object_add(o, "permissions", json_object_new_string(sum));
        if (st != VKS_OK)
            json_object_object_add(o, "warning", json_object_new_string(e.msg));
        sv_send_json_secret(r, 201, o, &pw);
    } else {
        const char *f = strstr(e.msg, "--username") || strstr(e.msg, "username") ? "username"
                        : strstr(e.msg, "NAME") ? "name" : strstr(e.msg, "--owner") ? "owner"
                        : strstr(e.msg, "--tenant") ? "tenant" : strstr(e.msg, "--relay") ? "relay" : NULL;
        if (st == VKS_E_INVALID_INPUT)
            sv_send_error(r, 400, "invalid_input", f, "%s", e.msg);
        else
            sv_send_status(r, st, &e);
    }
    vks_secret_free(&pw);
    vks_cred_restrictions_free(&rs);
    json_object_put(b);
}

static void show(struct sv_req *r, const char *prefix, const char *name)
{
    struct vks_cred_ctx ctx;
    struct vks_err e;
    vks_err_clear(&e);
    struct vks_cred_record rec;
    memset(&rec, 0, sizeof rec);
    vks_status st = sv_ctx(r, prefix, &ctx, &e);
    char vpath[512];
    snprintf(vpath, sizeof vpath, "%s%s", prefix, name);
    if (st == VKS_OK)
        st = vks_cred_show(&ctx, name, &rec, &e);
    sv_audit_read(r, "view", st, vpath, rec.username);
    if (st != VKS_OK) {
        vks_cred_record_free(&rec);
        sv_send_status(r, st, &e);
        return;
    }
    json_object *o = sv_record_json(&rec, true);
    char fp[33] = "";
    struct vks_err fe;
    vks_err_clear(&fe);
    vks_status fst = vks_cred_fingerprint(&ctx, name, fp, &fe); /* needs read on data/: support roles */
    json_object_object_add(o, "fingerprint", fst == VKS_OK ? json_object_new_string(fp) : NULL);
    if (fst != VKS_OK)
        json_object_object_add(o, "fingerprint_note", json_object_new_string(
            fst == VKS_E_PERMISSION_DENIED ? "not shown: this role may not read the credential's data" : fe.msg));
    char path[512], verdict[80];
    snprintf(path, sizeof path, "%s%s", ctx.prefix, name);
    json_object_object_add(o, "audit_events", sv_audit_query(path, NULL, NULL, NULL, NULL, 20, verdict, sizeof verdict));
    json_object_object_add(o, "audit_chain", json_object_new_string(verdict));
    vks_cred_record_free(&rec);
    sv_send_json(r, 200, o, true);
}

void sv_api_due(struct sv_req *r)
{
    int64_t within = 30 * 86400;
    const char *w = sv_query(r, "within");
    if (w && !vks_cred_parse_duration(w, &within))
        {
            sv_send_error(r, 400, "invalid_input", "within", "within: 0, Nd, Nw or Nh (at most 3650d)");
            return;
        }
    char prefix[VKS_CRED_NAME_MAX + 1];
    if (!sv_tenant_prefix(r, prefix, sizeof prefix))
        return;
    struct vks_cred_ctx ctx;
    struct vks_err e;
    vks_err_clear(&e);
    struct vks_cred_record *recs = NULL;
    size_t n = 0;
    vks_status st = sv_ctx(r, prefix, &ctx, &e);
    if (st == VKS_OK)
        st = vks_cred_list(&ctx, &recs, &n, &e);
    if (st != VKS_OK)
        {
            sv_send_status(r, st, &e);
            return;
        }
    json_object *a = json_object_new_array();
    static const char *const ds[] = { "ok", "soon", "overdue", "invalid" };
    for (size_t i = 0; i < n; i++) {
        struct vks_cred_due d;
        if (!recs[i].managed)
            continue;
        vks_cred_due_eval(&recs[i], time(NULL), within, ctx.rotation_days, &d);
        if (d.status == VKS_CRED_DUE_OK)
            continue;
        json_object *o = json_object_new_object();
        jset(o, "name", recs[i].name);
        jset(o, "username", recs[i].username);
        jset(o, "status", ds[d.status]);
        char due[40] = "";
        if (d.status != VKS_CRED_DUE_INVALID)
            vks_cred_time(d.due, 0, due);
        jset(o, "due", due);
        jset(o, "why", d.why);
        json_object_array_add(a, o);
    }
    vks_cred_records_free(recs, n);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "due", a);
    sv_send_json(r, 200, o, true);
}

void sv_api_credentials(struct sv_req *r, const char *rest)
{
    bool get = !strcmp(r->method, "GET"), post = !strcmp(r->method, "POST"), del = !strcmp(r->method, "DELETE");
    char prefix[VKS_CRED_NAME_MAX + 1];
    if (!sv_tenant_prefix(r, prefix, sizeof prefix))
        return;
    if (!*rest) {
        if (get)
            {
                list(r);
                return;
            }
        if (post)
            {
                create(r, prefix);
                return;
            }
    } else {
        char name[VKS_CRED_NAME_MAX + 16];
        snprintf(name, sizeof name, "%s", rest);
        size_t l = strlen(name);
        if (post && l > 7 && !strcmp(name + l - 7, "/reveal")) {
            name[l - 7] = '\0';
            {
                sv_api_reveal(r, prefix, name);
                return;
            }
        }
        if (post && l > 7 && !strcmp(name + l - 7, "/rotate")) {
            name[l - 7] = '\0';
            sv_api_rotate(r, prefix, name);
            return;
        }
        if (post && l > 6 && !strcmp(name + l - 6, "/reset")) {
            name[l - 6] = '\0';
            sv_api_reset(r, prefix, name);
            return;
        }
        if (post && l > 9 && !strcmp(name + l - 9, "/restrict")) {
            name[l - 9] = '\0';
            {
                sv_api_restrict(r, prefix, name);
                return;
            }
        }
        if (get)
            {
                show(r, prefix, name);
                return;
            }
        if (del)
            {
                sv_api_delete(r, prefix, name);
                return;
            }
    }
    sv_send_error(r, 405, "method_not_allowed", NULL, "%s is not allowed on %.200s", r->method, r->path);
}
