/* vault-dev: the token store (auth/token/...) and the AppRole auth method (auth/<mount>/...). */
#include "vd.h"
#include "vd_http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NS 1000000000LL

static struct json_object *tokens(void) { return vd_get(vd_state, "tokens"); }

static int cmp_str(const void *a, const void *b)
{
    return strcmp(json_object_get_string(*(struct json_object *const *)a),
                  json_object_get_string(*(struct json_object *const *)b));
}

/* policies: sanitized copy, sorted, "default" added unless no_default or root */
static struct json_object *sanitize_policies(struct json_object *in, bool add_default)
{
    struct json_object *p = vd_str_list(in);
    if (vd_list_has(p, "root")) {
        json_object_put(p);
        p = json_object_new_array();
        json_object_array_add(p, json_object_new_string("root"));
        return p;
    }
    if (add_default && !vd_list_has(p, "default"))
        json_object_array_add(p, json_object_new_string("default"));
    json_object_array_sort(p, cmp_str);
    return p;
}

struct json_object *vd_token_new(struct json_object *policies, int64_t ttl, bool renewable,
                                 int64_t num_uses, const char *parent, const char *path,
                                 const char *ns, struct json_object *meta, const char *display_name,
                                 int64_t explicit_max_ttl, int64_t period, const char *id)
{
    char idbuf[32], acc[32];
    if (!id) {
        memcpy(idbuf, "hvs.", 4);
        vd_random_b62(idbuf + 4, 24);
        id = idbuf;
    }
    vd_random_b62(acc, 24);
    int64_t now = vd_now_ns();
    struct json_object *t = json_object_new_object();
    json_object_object_add(t, "accessor", json_object_new_string(acc));
    json_object_object_add(t, "policies", json_object_get(policies));
    json_object_object_add(t, "namespace", json_object_new_string(ns ? ns : ""));
    json_object_object_add(t, "path", json_object_new_string(path));
    json_object_object_add(t, "display_name", json_object_new_string(display_name ? display_name : "token"));
    json_object_object_add(t, "meta", meta ? json_object_get(meta) : NULL);
    json_object_object_add(t, "creation_ns", json_object_new_int64(now));
    json_object_object_add(t, "creation_ttl", json_object_new_int64(ttl));
    json_object_object_add(t, "expire_ns", json_object_new_int64(ttl ? now + ttl * NS : 0));
    json_object_object_add(t, "renewable", json_object_new_boolean(renewable && ttl));
    json_object_object_add(t, "num_uses", json_object_new_int64(num_uses));
    json_object_object_add(t, "parent", parent ? json_object_new_string(parent) : NULL);
    json_object_object_add(t, "explicit_max_ttl", json_object_new_int64(explicit_max_ttl));
    json_object_object_add(t, "period", json_object_new_int64(period));
    json_object_object_add(t, "last_renewal_ns", json_object_new_int64(0));
    json_object_object_add(tokens(), id, t);
    vd_state_dirty();
    return t;
}

struct json_object *vd_token_lookup(const char *id, int64_t now)
{
    struct json_object *t = vd_get(tokens(), id);
    if (!t)
        return NULL;
    int64_t exp = vd_int(t, "expire_ns", 0);
    if (exp && now >= exp)
        return NULL;
    return t;
}

static const char *token_id_of(struct json_object *t)
{
    json_object_object_foreach(tokens(), k, v) if (v == t) return k;
    return NULL;
}

void vd_token_revoke(const char *id, bool children)
{
    char *own = strdup(id);
    if (!own)
        abort();
    if (children) {
        /* collect children first: revoking mutates the table */
        struct json_object *kids = json_object_new_array();
        json_object_object_foreach(tokens(), k, v)
        {
            const char *p = vd_str(v, "parent");
            if (p && !strcmp(p, own))
                json_object_array_add(kids, json_object_new_string(k));
        }
        for (size_t i = 0; i < json_object_array_length(kids); i++)
            vd_token_revoke(json_object_get_string(json_object_array_get_idx(kids, i)), true);
        json_object_put(kids);
    }
    json_object_object_del(tokens(), own);
    free(own);
    vd_state_dirty();
}

void vd_token_use(struct vd_req *q)
{
    int64_t n = vd_int(q->token, "num_uses", 0);
    if (n <= 0)
        return;
    if (n == 1) {
        /* last use: the request proceeds, the token is gone afterwards (Vault marks it for
           revocation); keep a detached copy for the handler */
        struct json_object *copy = NULL;
        json_object_deep_copy(q->token, &copy, NULL);
        json_object_object_add(copy, "num_uses", json_object_new_int64(-1));
        const char *id = token_id_of(q->token);
        if (id)
            vd_token_revoke(id, true);
        /* keep the copy alive for this request: stash in the state under a scratch key */
        json_object_object_add(vd_state, "_last_use_token", copy);
        q->token = copy;
    } else {
        json_object_object_add(q->token, "num_uses", json_object_new_int64(n - 1));
        vd_state_dirty();
    }
}

struct json_object *vd_token_auth(struct json_object *t, const char *id, int64_t now)
{
    struct json_object *a = json_object_new_object();
    json_object_object_add(a, "client_token", json_object_new_string(id));
    json_object_object_add(a, "accessor", json_object_new_string(vd_str(t, "accessor")));
    json_object_object_add(a, "policies", json_object_get(vd_get(t, "policies")));
    json_object_object_add(a, "token_policies", json_object_get(vd_get(t, "policies")));
    json_object_object_add(a, "metadata", json_object_get(vd_get(t, "meta")));
    int64_t exp = vd_int(t, "expire_ns", 0);
    int64_t ld = exp ? (exp - now + NS / 2) / NS : 0;
    json_object_object_add(a, "lease_duration", json_object_new_int64(ld < 0 ? 0 : ld));
    json_object_object_add(a, "renewable", json_object_new_boolean(vd_bool(t, "renewable", false)));
    json_object_object_add(a, "entity_id", json_object_new_string(""));
    json_object_object_add(a, "token_type", json_object_new_string("service"));
    json_object_object_add(a, "orphan", json_object_new_boolean(vd_get(t, "parent") == NULL));
    json_object_object_add(a, "mfa_requirement", NULL);
    int64_t nu = vd_int(t, "num_uses", 0);
    json_object_object_add(a, "num_uses", json_object_new_int64(nu < 0 ? 0 : nu));
    return a;
}

static struct json_object *token_lookup_data(struct json_object *t, const char *id, int64_t now)
{
    struct json_object *d = json_object_new_object();
    int64_t cns = vd_int(t, "creation_ns", 0), exp = vd_int(t, "expire_ns", 0);
    json_object_object_add(d, "accessor", json_object_new_string(vd_str(t, "accessor")));
    json_object_object_add(d, "creation_time", json_object_new_int64(cns / NS));
    json_object_object_add(d, "creation_ttl", json_object_new_int64(vd_int(t, "creation_ttl", 0)));
    json_object_object_add(d, "display_name", json_object_new_string(vd_str(t, "display_name")));
    json_object_object_add(d, "entity_id", json_object_new_string(""));
    json_object_object_add(d, "expire_time", exp ? vd_time_obj(exp) : NULL);
    json_object_object_add(d, "explicit_max_ttl", json_object_new_int64(vd_int(t, "explicit_max_ttl", 0)));
    json_object_object_add(d, "id", json_object_new_string(id));
    json_object_object_add(d, "meta", json_object_get(vd_get(t, "meta")));
    int64_t nu = vd_int(t, "num_uses", 0);
    json_object_object_add(d, "num_uses", json_object_new_int64(nu < 0 ? 0 : nu));
    json_object_object_add(d, "orphan", json_object_new_boolean(vd_get(t, "parent") == NULL));
    json_object_object_add(d, "path", json_object_new_string(vd_str(t, "path")));
    json_object_object_add(d, "policies", json_object_get(vd_get(t, "policies")));
    int64_t ttl = exp ? (exp - now) / NS : 0;
    json_object_object_add(d, "ttl", json_object_new_int64(ttl < 0 ? 0 : ttl));
    json_object_object_add(d, "type", json_object_new_string("service"));
    const char *ns = vd_str(t, "namespace");
    if (ns && *ns)
        json_object_object_add(d, "namespace_path", json_object_new_string(ns));
    if (vd_int(t, "period", 0))
        json_object_object_add(d, "period", json_object_new_int64(vd_int(t, "period", 0)));
    if (exp) {
        json_object_object_add(d, "renewable", json_object_new_boolean(vd_bool(t, "renewable", false)));
        json_object_object_add(d, "issue_time", vd_time_obj(cns));
    }
    int64_t lr = vd_int(t, "last_renewal_ns", 0);
    if (lr) {
        json_object_object_add(d, "last_renewal_time", json_object_new_int64(lr / NS));
        json_object_object_add(d, "last_renewal", vd_time_obj(lr));
    }
    return d;
}

static void reply_data(struct vd_req *q, struct vd_resp *r, struct json_object *data)
{
    struct vd_env e = {0};
    e.data = data;
    vd_reply_env(r, q, 200, &e, false);
    json_object_put(data);
}

static void reply_auth(struct vd_req *q, struct vd_resp *r, struct json_object *auth, struct json_object *warnings)
{
    struct vd_env e = {0};
    e.auth = auth;
    e.warnings = warnings;
    vd_reply_env(r, q, 200, &e, false);
    json_object_put(auth);
    json_object_put(warnings);
}

static void renew(struct vd_req *q, struct vd_resp *r, struct json_object *t, const char *id)
{
    if (!t || vd_int(t, "num_uses", 0) < 0) {
        vd_reply_error(r, 400, "invalid lease ID");
        return;
    }
    int64_t exp = vd_int(t, "expire_ns", 0);
    if (!exp) {
        vd_reply_error(r, 400, "invalid lease ID");
        return;
    }
    if (!vd_bool(t, "renewable", false)) {
        vd_reply_error(r, 400, "lease is not renewable");
        return;
    }
    int64_t inc = 0;
    if (vd_parse_duration(vd_get(q->body, "increment"), &inc) != 0) {
        vd_reply_error(r, 400, "invalid increment");
        return;
    }
    int64_t period = vd_int(t, "period", 0);
    if (period)
        inc = period;
    else if (inc == 0)
        inc = vd_int(t, "creation_ttl", VD_DEFAULT_TTL);
    int64_t cns = vd_int(t, "creation_ns", 0);
    int64_t max_ttl = vd_int(t, "explicit_max_ttl", 0);
    if (!max_ttl || max_ttl > VD_DEFAULT_TTL)
        max_ttl = period ? 0 : VD_DEFAULT_TTL;
    int64_t now = q->now;
    int64_t new_exp = now + inc * NS;
    struct json_object *warn = NULL;
    if (max_ttl && new_exp > cns + max_ttl * NS) {
        new_exp = cns + max_ttl * NS;
        int64_t left = (new_exp - now) / NS;
        if (left <= 0) {
            vd_reply_error(r, 400, "lease expired");
            return;
        }
        char a[32], b[32], w[160];
        vd_duration_string(inc, a);
        vd_duration_string(left, b);
        snprintf(w, sizeof w, "TTL of \"%s\" exceeded the effective max_ttl of \"%s\"; TTL value is capped accordingly", a, b);
        warn = json_object_new_array();
        json_object_array_add(warn, json_object_new_string(w));
    }
    json_object_object_add(t, "expire_ns", json_object_new_int64(new_exp));
    json_object_object_add(t, "last_renewal_ns", json_object_new_int64(now));
    vd_state_dirty();
    reply_auth(q, r, vd_token_auth(t, id, now), warn);
}

static void token_create(struct vd_req *q, struct vd_resp *r, bool orphan)
{
    struct json_object *b = q->body;
    bool no_default = vd_bool(b, "no_default_policy", false);
    struct json_object *req_pol = vd_str_list(vd_get(b, "policies"));
    struct json_object *parent_pol = vd_get(q->token, "policies");
    if (json_object_array_length(req_pol) == 0) {
        json_object_put(req_pol);
        req_pol = vd_str_list(parent_pol);
    }
    if (!q->is_root) {
        for (size_t i = 0; i < json_object_array_length(req_pol); i++) {
            const char *p = json_object_get_string(json_object_array_get_idx(req_pol, i));
            if (!vd_list_has(parent_pol, p) && strcmp(p, "default") != 0) {
                json_object_put(req_pol);
                vd_reply_error(r, 400, "child policies must be subset of parent");
                return;
            }
        }
        if (orphan || vd_bool(b, "no_parent", false)) {
            json_object_put(req_pol);
            vd_reply_error(r, 403, "permission denied");
            return;
        }
    }
    struct json_object *pol = sanitize_policies(req_pol, !no_default);
    json_object_put(req_pol);
    int64_t ttl = 0, emt = 0, period = 0, uses = 0;
    if (vd_parse_duration(vd_get(b, "ttl"), &ttl) || vd_parse_duration(vd_get(b, "explicit_max_ttl"), &emt) ||
        vd_parse_duration(vd_get(b, "period"), &period)) {
        json_object_put(pol);
        vd_reply_error(r, 400, "invalid duration");
        return;
    }
    if (vd_get(b, "num_uses") && (vd_as_int(vd_get(b, "num_uses"), &uses) || uses < 0)) {
        json_object_put(pol);
        vd_reply_error(r, 400, "number of uses cannot be negative");
        return;
    }
    bool root_pol = vd_list_has(pol, "root");
    if (period)
        ttl = period;
    if (!ttl && !(root_pol && !vd_get(b, "ttl")))
        ttl = VD_DEFAULT_TTL;
    if (root_pol && !vd_get(b, "ttl"))
        ttl = 0;
    if (emt && ttl > emt)
        ttl = emt;
    if (ttl > VD_DEFAULT_TTL && !period)
        ttl = VD_DEFAULT_TTL;
    bool renewable = vd_bool(b, "renewable", true);
    const char *dn = vd_str(b, "display_name");
    char dnb[200];
    snprintf(dnb, sizeof dnb, "token%s%s", dn && *dn ? "-" : "", dn ? dn : "");
    struct json_object *meta = vd_get(b, "meta");
    if (meta && !json_object_is_type(meta, json_type_object))
        meta = NULL;
    const char *custom_id = q->is_root ? vd_str(b, "id") : NULL;
    if (custom_id && vd_get(vd_get(vd_state, "tokens"), custom_id)) {
        json_object_put(pol);
        vd_reply_error(r, 400, "cannot create a token with a duplicate ID");
        return;
    }
    const char *parent = (orphan || vd_bool(b, "no_parent", false)) ? NULL : token_id_of(q->token);
    char pbuf[256] = "";
    if (parent)
        snprintf(pbuf, sizeof pbuf, "%s", parent);
    char idb[32];
    if (!custom_id) {
        memcpy(idb, "hvs.", 4);
        vd_random_b62(idb + 4, 24);
        custom_id = idb;
    }
    char idcopy[512];
    snprintf(idcopy, sizeof idcopy, "%s", custom_id);
    struct json_object *t = vd_token_new(pol, ttl, renewable, uses, parent ? pbuf : NULL,
                                         orphan ? "auth/token/create-orphan" : "auth/token/create",
                                         q->ns, meta, dnb, emt, period, idcopy);
    json_object_put(pol);
    reply_auth(q, r, vd_token_auth(t, idcopy, vd_int(t, "creation_ns", q->now)), NULL);
}

static struct json_object *by_accessor(const char *acc, const char **id)
{
    if (!acc)
        return NULL;
    json_object_object_foreach(tokens(), k, v)
    {
        const char *a = vd_str(v, "accessor");
        if (a && !strcmp(a, acc)) {
            *id = k;
            return v;
        }
    }
    return NULL;
}

static bool token_handle(struct vd_req *q, struct vd_resp *r, const char *sub)
{
    const char *self_id = q->token_id;
    if (!strcmp(sub, "lookup-self") && (q->op == VD_OP_READ || q->op == VD_OP_UPDATE)) {
        reply_data(q, r, token_lookup_data(q->token, self_id, q->now));
        return true;
    }
    if (!strcmp(sub, "lookup") || !strncmp(sub, "lookup/", 7)) {
        const char *id = sub[6] == '/' ? sub + 7 : vd_str(q->body, "token");
        if (!id)
            id = vd_query(q, "token");
        if (!id || !*id) {
            vd_reply_error(r, 400, "missing token to look up");
            return true;
        }
        struct json_object *t = vd_token_lookup(id, q->now);
        if (!t) {
            vd_reply_error(r, 403, "bad token");
            return true;
        }
        reply_data(q, r, token_lookup_data(t, id, q->now));
        return true;
    }
    if (!strcmp(sub, "lookup-accessor") && q->op == VD_OP_UPDATE) {
        const char *id = NULL;
        struct json_object *t = by_accessor(vd_str(q->body, "accessor"), &id);
        if (!t || !vd_token_lookup(id, q->now)) {
            vd_reply_error(r, 400, "invalid accessor");
            return true;
        }
        struct json_object *d = token_lookup_data(t, "", q->now);
        reply_data(q, r, d);
        return true;
    }
    if (!strcmp(sub, "renew-self") && q->op == VD_OP_UPDATE) {
        renew(q, r, q->token, self_id);
        return true;
    }
    if (!strcmp(sub, "renew") && q->op == VD_OP_UPDATE) {
        const char *id = vd_str(q->body, "token");
        struct json_object *t = id ? vd_token_lookup(id, q->now) : NULL;
        if (!t) {
            vd_reply_error(r, 400, id ? "invalid lease ID" : "missing token");
            return true;
        }
        renew(q, r, t, id);
        return true;
    }
    if (!strcmp(sub, "revoke-self") && q->op == VD_OP_UPDATE) {
        if (vd_token_lookup(self_id, q->now))
            vd_token_revoke(self_id, true);
        vd_reply_204(r);
        return true;
    }
    if ((!strcmp(sub, "revoke") || !strcmp(sub, "revoke-orphan")) && q->op == VD_OP_UPDATE) {
        const char *id = vd_str(q->body, "token");
        if (!id) {
            vd_reply_error(r, 400, "missing token");
            return true;
        }
        if (vd_get(tokens(), id))
            vd_token_revoke(id, strcmp(sub, "revoke") == 0);
        vd_reply_204(r);
        return true;
    }
    if (!strcmp(sub, "revoke-accessor") && q->op == VD_OP_UPDATE) {
        const char *id = NULL;
        if (by_accessor(vd_str(q->body, "accessor"), &id)) {
            char *own = strdup(id);
            vd_token_revoke(own, true);
            free(own);
        }
        vd_reply_204(r);
        return true;
    }
    if ((!strcmp(sub, "create") || !strcmp(sub, "create-orphan")) && q->op == VD_OP_UPDATE) {
        token_create(q, r, !strcmp(sub, "create-orphan"));
        return true;
    }
    if (!strcmp(sub, "accessors") && q->op == VD_OP_LIST) {
        struct json_object *keys = json_object_new_array();
        json_object_object_foreach(tokens(), k, v)
        {
            (void)k;
            json_object_array_add(keys, json_object_new_string(vd_str(v, "accessor")));
        }
        struct json_object *d = json_object_new_object();
        json_object_object_add(d, "keys", keys);
        reply_data(q, r, d);
        return true;
    }
    return false;
}

/* ------------------------------------------------------------------ AppRole */

static struct json_object *role_view(struct json_object *role)
{
    struct json_object *d = json_object_new_object();
    static const char *const copy[] = {"bind_secret_id", "secret_id_num_uses", "secret_id_ttl",
                                       "token_ttl", "token_max_ttl", "token_policies", "token_num_uses",
                                       "token_period"};
    for (size_t i = 0; i < sizeof copy / sizeof *copy; i++)
        json_object_object_add(d, copy[i], json_object_get(vd_get(role, copy[i])));
    json_object_object_add(d, "policies", json_object_get(vd_get(role, "token_policies")));
    json_object_object_add(d, "period", json_object_get(vd_get(role, "token_period")));
    json_object_object_add(d, "local_secret_ids", json_object_new_boolean(0));
    json_object_object_add(d, "secret_id_bound_cidrs", NULL);
    json_object_object_add(d, "token_bound_cidrs", json_object_new_array());
    json_object_object_add(d, "token_explicit_max_ttl", json_object_new_int64(0));
    json_object_object_add(d, "token_no_default_policy", json_object_new_boolean(0));
    json_object_object_add(d, "token_type", json_object_new_string("default"));
    return d;
}

static int role_write(struct json_object *role, struct json_object *b, char *msg, size_t ml)
{
    static const char *const durs[] = {"secret_id_ttl", "token_ttl", "token_max_ttl", "token_period"};
    for (size_t i = 0; i < 4; i++) {
        struct json_object *v = vd_get(b, durs[i]);
        if (!v && i == 3)
            v = vd_get(b, "period");
        int64_t s;
        if (v) {
            if (vd_parse_duration(v, &s)) {
                snprintf(msg, ml, "invalid %s", durs[i]);
                return -1;
            }
            json_object_object_add(role, durs[i], json_object_new_int64(s));
        } else if (!vd_get(role, durs[i]))
            json_object_object_add(role, durs[i], json_object_new_int64(0));
    }
    static const char *const ints[] = {"secret_id_num_uses", "token_num_uses"};
    for (size_t i = 0; i < 2; i++) {
        struct json_object *v = vd_get(b, ints[i]);
        int64_t x;
        if (v) {
            if (vd_as_int(v, &x) || x < 0) {
                snprintf(msg, ml, "%s cannot be negative", ints[i]);
                return -1;
            }
            json_object_object_add(role, ints[i], json_object_new_int64(x));
        } else if (!vd_get(role, ints[i]))
            json_object_object_add(role, ints[i], json_object_new_int64(0));
    }
    struct json_object *pv = vd_get(b, "token_policies");
    if (!pv)
        pv = vd_get(b, "policies");
    if (pv) {
        struct json_object *p = vd_str_list(pv);
        json_object_array_sort(p, cmp_str);
        json_object_object_add(role, "token_policies", p);
    } else if (!vd_get(role, "token_policies"))
        json_object_object_add(role, "token_policies", json_object_new_array());
    bool bind = vd_bool(b, "bind_secret_id", vd_bool(role, "bind_secret_id", true));
    json_object_object_add(role, "bind_secret_id", json_object_new_boolean(bind));
    if (!vd_get(role, "role_id")) {
        char id[37];
        vd_uuid(id);
        json_object_object_add(role, "role_id", json_object_new_string(id));
    }
    if (!vd_get(role, "secret_ids"))
        json_object_object_add(role, "secret_ids", json_object_new_object());
    return 0;
}

static void secret_id_issue(struct vd_req *q, struct vd_resp *r, struct json_object *role, const char *custom)
{
    char sid[37], acc[37];
    if (custom)
        snprintf(sid, sizeof sid, "%s", custom);
    else
        vd_uuid(sid);
    if (custom && strlen(custom) >= sizeof sid) {
        vd_reply_error(r, 400, "secret_id too long");
        return;
    }
    vd_uuid(acc);
    int64_t ttl = vd_int(role, "secret_id_ttl", 0), uses = vd_int(role, "secret_id_num_uses", 0), x;
    if (vd_get(q->body, "ttl") && vd_parse_duration(vd_get(q->body, "ttl"), &x) == 0 && x)
        ttl = x;
    if (vd_get(q->body, "num_uses") && vd_as_int(vd_get(q->body, "num_uses"), &x) == 0)
        uses = x;
    struct json_object *s = json_object_new_object();
    json_object_object_add(s, "accessor", json_object_new_string(acc));
    json_object_object_add(s, "creation_ns", json_object_new_int64(q->now));
    json_object_object_add(s, "expire_ns", json_object_new_int64(ttl ? q->now + ttl * NS : 0));
    json_object_object_add(s, "num_uses", json_object_new_int64(uses));
    json_object_object_add(s, "metadata", json_object_get(vd_get(q->body, "metadata")));
    json_object_object_add(vd_get(role, "secret_ids"), sid, s);
    vd_state_dirty();
    struct json_object *d = json_object_new_object();
    json_object_object_add(d, "secret_id", json_object_new_string(sid));
    json_object_object_add(d, "secret_id_accessor", json_object_new_string(acc));
    json_object_object_add(d, "secret_id_ttl", json_object_new_int64(ttl));
    json_object_object_add(d, "secret_id_num_uses", json_object_new_int64(uses));
    reply_data(q, r, d);
}

static void approle_login(struct vd_req *q, struct vd_resp *r, struct json_object *mount, const char *mpath)
{
    const char *role_id = vd_str(q->body, "role_id"), *secret_id = vd_str(q->body, "secret_id");
    if (!role_id || !*role_id) {
        vd_reply_error(r, 400, "missing role_id");
        return;
    }
    const char *name = NULL;
    struct json_object *role = NULL;
    json_object_object_foreach(vd_get(mount, "roles"), k, v)
    {
        const char *rid = vd_str(v, "role_id");
        if (rid && !strcmp(rid, role_id)) {
            name = k;
            role = v;
        }
    }
    if (!role) {
        vd_reply_error(r, 400, "invalid role or secret ID");
        return;
    }
    if (vd_bool(role, "bind_secret_id", true)) {
        if (!secret_id || !*secret_id) {
            vd_reply_error(r, 400, "missing secret_id");
            return;
        }
        struct json_object *s = vd_get(vd_get(role, "secret_ids"), secret_id);
        int64_t exp = vd_int(s, "expire_ns", 0);
        if (!s || (exp && q->now >= exp)) {
            vd_reply_error(r, 400, "invalid role or secret ID");
            return;
        }
        int64_t uses = vd_int(s, "num_uses", 0);
        if (uses == 1)
            json_object_object_del(vd_get(role, "secret_ids"), secret_id);
        else if (uses > 1)
            json_object_object_add(s, "num_uses", json_object_new_int64(uses - 1));
    }
    struct json_object *pol = sanitize_policies(vd_get(role, "token_policies"), true);
    int64_t ttl = vd_int(role, "token_ttl", 0), max = vd_int(role, "token_max_ttl", 0);
    int64_t period = vd_int(role, "token_period", 0);
    if (!ttl)
        ttl = VD_DEFAULT_TTL;
    if (max && ttl > max)
        ttl = max;
    if (period)
        ttl = period;
    struct json_object *meta = json_object_new_object();
    json_object_object_add(meta, "role_name", json_object_new_string(name));
    char path[300];
    snprintf(path, sizeof path, "auth/%slogin", mpath);
    char id[32];
    memcpy(id, "hvs.", 4);
    vd_random_b62(id + 4, 24);
    struct json_object *t = vd_token_new(pol, ttl, true, vd_int(role, "token_num_uses", 0), NULL, path,
                                         q->ns, meta, "approle", max, period, id);
    json_object_put(pol);
    json_object_put(meta);
    struct json_object *a = vd_token_auth(t, id, vd_int(t, "creation_ns", q->now));
    reply_auth(q, r, a, NULL);
}

static bool approle_handle(struct vd_req *q, struct vd_resp *r, struct json_object *mount,
                           const char *mpath, const char *sub)
{
    if (!vd_get(mount, "roles"))
        json_object_object_add(mount, "roles", json_object_new_object());
    struct json_object *roles = vd_get(mount, "roles");
    if (!strcmp(sub, "login") && q->op == VD_OP_UPDATE) {
        approle_login(q, r, mount, mpath);
        return true;
    }
    if ((!strcmp(sub, "role") || !strcmp(sub, "role/")) && q->op == VD_OP_LIST) {
        struct json_object *keys = json_object_new_array();
        json_object_object_foreach(roles, k, v)
        {
            (void)v;
            json_object_array_add(keys, json_object_new_string(k));
        }
        json_object_array_sort(keys, cmp_str);
        if (json_object_array_length(keys) == 0) {
            json_object_put(keys);
            vd_reply_error(r, 404, NULL);
            return true;
        }
        struct json_object *d = json_object_new_object();
        json_object_object_add(d, "keys", keys);
        reply_data(q, r, d);
        return true;
    }
    if (strncmp(sub, "role/", 5) != 0)
        return false;
    char name[256];
    const char *rest = sub + 5, *slash = strchr(rest, '/');
    size_t nl = slash ? (size_t)(slash - rest) : strlen(rest);
    if (nl == 0 || nl >= sizeof name)
        return false;
    memcpy(name, rest, nl);
    name[nl] = 0;
    const char *tail = slash ? slash + 1 : "";
    struct json_object *role = vd_get(roles, name);
    if (!*tail) {
        if (q->op == VD_OP_UPDATE) {
            char msg[128];
            bool created = !role;
            if (!role)
                role = json_object_new_object();
            if (role_write(role, q->body, msg, sizeof msg)) {
                if (created)
                    json_object_put(role);
                vd_reply_error(r, 400, msg);
                return true;
            }
            if (created)
                json_object_object_add(roles, name, role);
            vd_state_dirty();
            vd_reply_204(r);
        } else if (q->op == VD_OP_READ) {
            if (!role)
                vd_reply_error(r, 404, NULL);
            else
                reply_data(q, r, role_view(role));
        } else if (q->op == VD_OP_DELETE) {
            json_object_object_del(roles, name);
            vd_state_dirty();
            vd_reply_204(r);
        } else
            vd_reply_error(r, 405, "unsupported operation");
        return true;
    }
    if (!role) {
        if (q->op == VD_OP_READ || q->op == VD_OP_LIST)
            vd_reply_error(r, 404, NULL);
        else
            vd_reply_errorf(r, 400, "role \"%s\" does not exist", name);
        return true;
    }
    if (!strcmp(tail, "role-id")) {
        if (q->op == VD_OP_READ) {
            struct json_object *d = json_object_new_object();
            json_object_object_add(d, "role_id", json_object_get(vd_get(role, "role_id")));
            reply_data(q, r, d);
        } else if (q->op == VD_OP_UPDATE) {
            const char *rid = vd_str(q->body, "role_id");
            if (!rid || !*rid) {
                vd_reply_error(r, 400, "missing role_id");
                return true;
            }
            json_object_object_add(role, "role_id", json_object_new_string(rid));
            vd_state_dirty();
            vd_reply_204(r);
        } else
            vd_reply_error(r, 405, "unsupported operation");
        return true;
    }
    if (!strcmp(tail, "secret-id") && q->op == VD_OP_UPDATE) {
        secret_id_issue(q, r, role, NULL);
        return true;
    }
    if (!strcmp(tail, "secret-id") && q->op == VD_OP_LIST) {
        struct json_object *keys = json_object_new_array();
        json_object_object_foreach(vd_get(role, "secret_ids"), k, v)
        {
            (void)k;
            json_object_array_add(keys, json_object_new_string(vd_str(v, "accessor")));
        }
        if (json_object_array_length(keys) == 0) {
            json_object_put(keys);
            vd_reply_error(r, 404, NULL);
            return true;
        }
        struct json_object *d = json_object_new_object();
        json_object_object_add(d, "keys", keys);
        reply_data(q, r, d);
        return true;
    }
    if (!strcmp(tail, "custom-secret-id") && q->op == VD_OP_UPDATE) {
        const char *sid = vd_str(q->body, "secret_id");
        if (!sid || !*sid) {
            vd_reply_error(r, 400, "missing secret_id");
            return true;
        }
        secret_id_issue(q, r, role, sid);
        return true;
    }
    if (!strcmp(tail, "secret-id/destroy") && (q->op == VD_OP_UPDATE || q->op == VD_OP_DELETE)) {
        const char *sid = vd_str(q->body, "secret_id");
        if (sid)
            json_object_object_del(vd_get(role, "secret_ids"), sid);
        vd_state_dirty();
        vd_reply_204(r);
        return true;
    }
    return false;
}

bool vd_auth_handle(struct vd_req *q, struct vd_resp *r)
{
    const char *p = q->path + 5;
    if (!strncmp(p, "token/", 6))
        return token_handle(q, r, p + 6);
    json_object_object_foreach(vd_get(q->nsobj, "auth"), k, m)
    {
        size_t kl = strlen(k);
        if (strncmp(p, k, kl) == 0) {
            const char *type = vd_str(m, "type");
            if (type && !strcmp(type, "approle"))
                return approle_handle(q, r, m, k, p + kl);
            if (type && !strcmp(type, "userpass"))
                return vd_userpass_handle(q, r, m, k, p + kl);
        }
    }
    return false;
}
