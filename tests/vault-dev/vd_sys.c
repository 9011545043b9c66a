/* vault-dev: sys/ endpoints. health, seal-status, seal, unseal, leader, mounts, auth, policies,
 * internal/ui/mounts, namespaces, capabilities-self. */
#include "vd.h"
#include "vd_http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* one random cluster id per server state, like a real cluster's */
static const char *cluster_id(void)
{
    const char *id = vd_str(vd_state, "cluster_id");
    if (!id) {
        char u[37];
        vd_uuid(u);
        json_object_object_add(vd_state, "cluster_id", json_object_new_string(u));
        id = vd_str(vd_state, "cluster_id");
    }
    return id;
}

static int64_t dflt_ttl(int64_t v) { return v ? v : VD_DEFAULT_TTL; }

static bool has_prefix(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

static void reply_data(struct vd_req *q, struct vd_resp *r, struct json_object *data)
{
    struct vd_env e = {0};
    e.data = data;
    vd_reply_env(r, q, 200, &e, false);
    json_object_put(data);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(json_object_get_string(*(struct json_object *const *)a),
                  json_object_get_string(*(struct json_object *const *)b));
}

/* "a/b" -> "a/b/" (no leading '/'), malloc'd; NULL when empty */
static char *dir_key(const char *p)
{
    while (*p == '/')
        p++;
    size_t n = strlen(p);
    while (n && p[n - 1] == '/')
        n--;
    if (!n)
        return NULL;
    char *k = malloc(n + 2);
    if (!k)
        abort();
    memcpy(k, p, n);
    k[n] = '/';
    k[n + 1] = 0;
    return k;
}

static void health(struct vd_req *q, struct vd_resp *r)
{
    bool sealed = vd_bool(vd_state, "sealed", false);
    bool standby = vd_cfg.standby_of != NULL;
    int code = 200;
    const char *names[] = {"activecode", "standbycode", "sealedcode", "uninitcode",
                           "drsecondarycode", "performancestandbycode", "haunhealthycode", "removedcode"};
    int codes[8] = {200, 429, 503, 501, 472, 473, 474, 530};
    for (int i = 0; i < 8; i++) {
        const char *v = vd_query(q, names[i]);
        if (v) {
            char *end;
            long c = strtol(v, &end, 10);
            if (*end || !*v || c < 1 || c > 999) {
                vd_reply_errorf(r, 400, "unable to parse %s: invalid syntax", names[i]);
                return;
            }
            codes[i] = (int)c;
        }
    }
    const char *sok = vd_query(q, "standbyok");
    bool standbyok = sok && (!*sok || !strcmp(sok, "true") || !strcmp(sok, "1"));
    if (sealed)
        code = codes[2];
    else if (standby)
        code = standbyok ? codes[0] : codes[1];
    else
        code = codes[0];
    struct json_object *d = json_object_new_object();
    json_object_object_add(d, "initialized", json_object_new_boolean(1));
    json_object_object_add(d, "sealed", json_object_new_boolean(sealed));
    json_object_object_add(d, "standby", json_object_new_boolean(standby));
    json_object_object_add(d, "performance_standby", json_object_new_boolean(0));
    json_object_object_add(d, "replication_performance_mode", json_object_new_string("disabled"));
    json_object_object_add(d, "replication_dr_mode", json_object_new_string("disabled"));
    json_object_object_add(d, "server_time_utc", json_object_new_int64(vd_now_ns() / 1000000000LL));
    json_object_object_add(d, "version", json_object_new_string(VD_VERSION));
    json_object_object_add(d, "enterprise", json_object_new_boolean(0));
    if (!sealed) {
        json_object_object_add(d, "cluster_name", json_object_new_string("vault-dev-cluster"));
        json_object_object_add(d, "cluster_id", json_object_new_string(cluster_id()));
    }
    json_object_object_add(d, "echo_duration_ms", json_object_new_int(0));
    json_object_object_add(d, "clock_skew_ms", json_object_new_int(0));
    json_object_object_add(d, "replication_primary_canary_age_ms", json_object_new_int(0));
    vd_reply_json(r, code, d);
    vd_buf_str(&r->body, "\n");
    json_object_put(d);
}

static void seal_status(struct vd_req *q, struct vd_resp *r)
{
    (void)q;
    struct json_object *d = json_object_new_object();
    bool sealed = vd_bool(vd_state, "sealed", false);
    json_object_object_add(d, "type", json_object_new_string("shamir"));
    json_object_object_add(d, "initialized", json_object_new_boolean(1));
    json_object_object_add(d, "sealed", json_object_new_boolean(sealed));
    json_object_object_add(d, "t", json_object_new_int(1));
    json_object_object_add(d, "n", json_object_new_int(1));
    json_object_object_add(d, "progress", json_object_new_int(0));
    json_object_object_add(d, "nonce", json_object_new_string(""));
    json_object_object_add(d, "version", json_object_new_string(VD_VERSION));
    json_object_object_add(d, "build_date", json_object_new_string("2024-01-01T00:00:00Z"));
    json_object_object_add(d, "migration", json_object_new_boolean(0));
    json_object_object_add(d, "recovery_seal", json_object_new_boolean(0));
    json_object_object_add(d, "storage_type", json_object_new_string("inmem"));
    if (!sealed) {
        json_object_object_add(d, "cluster_name", json_object_new_string("vault-dev-cluster"));
        json_object_object_add(d, "cluster_id", json_object_new_string(cluster_id()));
    }
    vd_reply_json(r, 200, d);
    vd_buf_str(&r->body, "\n");
    json_object_put(d);
}

static struct json_object *mount_info(struct json_object *m, const char *path, bool with_path)
{
    struct json_object *d = json_object_new_object();
    static const char *const copy[] = {"type", "description", "accessor", "options", "uuid"};
    for (size_t i = 0; i < 5; i++)
        json_object_object_add(d, copy[i], json_object_get(vd_get(m, copy[i])));
    json_object_object_add(d, "local", json_object_new_boolean(0));
    json_object_object_add(d, "seal_wrap", json_object_new_boolean(0));
    json_object_object_add(d, "external_entropy_access", json_object_new_boolean(0));
    json_object_object_add(d, "plugin_version", json_object_new_string(""));
    json_object_object_add(d, "running_plugin_version", json_object_new_string("v0.24.0+builtin"));
    json_object_object_add(d, "running_sha256", json_object_new_string(""));
    struct json_object *cfg = json_object_new_object();
    json_object_object_add(cfg, "default_lease_ttl", json_object_new_int64(vd_int(vd_get(m, "config"), "default_lease_ttl", 0)));
    json_object_object_add(cfg, "max_lease_ttl", json_object_new_int64(vd_int(vd_get(m, "config"), "max_lease_ttl", 0)));
    json_object_object_add(cfg, "force_no_cache", json_object_new_boolean(0));
    json_object_object_add(d, "config", cfg);
    if (with_path)
        json_object_object_add(d, "path", json_object_new_string(path));
    return d;
}

static void ui_mounts(struct vd_req *q, struct vd_resp *r, const char *sub)
{
    if (!*sub) {
        /* listing: secret mounts the token can see */
        struct json_object *d = json_object_new_object(), *sec = json_object_new_object();
        if (q->token) {
            json_object_object_foreach(vd_get(q->nsobj, "mounts"), k, m)
            {
                if (vd_acl_any_under(q, k))
                    json_object_object_add(sec, k, mount_info(m, k, false));
            }
        }
        json_object_object_add(d, "secret", sec);
        json_object_object_add(d, "auth", json_object_new_object());
        reply_data(q, r, d);
        return;
    }
    char *sp = dir_key(sub);
    if (!q->token) {
        free(sp);
        vd_reply_error(r, 403, "permission denied");
        return;
    }
    const char *mpath = NULL;
    struct json_object *m = vd_mount_match(q->nsobj, sp, &mpath);
    if (!m || !vd_acl_any_under(q, mpath)) {
        vd_reply_errorf(r, 403,
                        "preflight capability check returned 403, please ensure client's policies grant access "
                        "to path \"%s\"", sp);
        free(sp);
        return;
    }
    free(sp);
    reply_data(q, r, mount_info(m, mpath, true));
}

static void mounts(struct vd_req *q, struct vd_resp *r, const char *sub)
{
    struct json_object *ms = vd_get(q->nsobj, "mounts");
    if (!*sub) {
        if (q->op != VD_OP_READ) {
            vd_reply_error(r, 405, "unsupported operation");
            return;
        }
        struct json_object *d = json_object_new_object();
        json_object_object_foreach(ms, k, m) json_object_object_add(d, k, mount_info(m, k, false));
        reply_data(q, r, d);
        return;
    }
    size_t sl = strlen(sub);
    bool tune = sl > 5 && !strcmp(sub + sl - 5, "/tune");
    char *tmp = strndup(sub, tune ? sl - 5 : sl);
    char *key = dir_key(tmp);
    free(tmp);
    if (!key) {
        vd_reply_error(r, 400, "path cannot be empty");
        return;
    }
    struct json_object *m = vd_get(ms, key);
    if (tune) {
        if (!m) {
            vd_reply_errorf(r, 400, "cannot fetch sysview for path \"%s\"", key);
        } else if (q->op == VD_OP_READ) {
            struct json_object *d = json_object_new_object();
            json_object_object_add(d, "default_lease_ttl", json_object_new_int64(dflt_ttl(vd_int(vd_get(m, "config"), "default_lease_ttl", 0))));
            json_object_object_add(d, "max_lease_ttl", json_object_new_int64(dflt_ttl(vd_int(vd_get(m, "config"), "max_lease_ttl", 0))));
            json_object_object_add(d, "force_no_cache", json_object_new_boolean(0));
            json_object_object_add(d, "options", json_object_get(vd_get(m, "options")));
            reply_data(q, r, d);
        } else if (q->op == VD_OP_UPDATE) {
            int64_t s;
            struct json_object *v;
            if ((v = vd_get(q->body, "default_lease_ttl")) && vd_parse_duration(v, &s) == 0)
                json_object_object_add(vd_get(m, "config"), "default_lease_ttl", json_object_new_int64(s));
            if ((v = vd_get(q->body, "max_lease_ttl")) && vd_parse_duration(v, &s) == 0)
                json_object_object_add(vd_get(m, "config"), "max_lease_ttl", json_object_new_int64(s));
            const char *ver = vd_str(vd_get(q->body, "options"), "version");
            if (ver && (!strcmp(ver, "1") || !strcmp(ver, "2"))) {
                struct json_object *o = json_object_new_object();
                json_object_object_add(o, "version", json_object_new_string(ver));
                json_object_object_add(m, "options", o);
            }
            vd_state_dirty();
            vd_reply_204(r);
        } else
            vd_reply_error(r, 405, "unsupported operation");
        free(key);
        return;
    }
    if (q->op == VD_OP_UPDATE) {
        const char *type = vd_str(q->body, "type");
        if (!type || !*type) {
            vd_reply_error(r, 400, "mount type cannot be empty"); /* close to Vault's "invalid backend type" */
            free(key);
            return;
        }
        int version = 0;
        const char *ver = vd_str(vd_get(q->body, "options"), "version");
        if (!strcmp(type, "kv-v2")) {
            type = "kv";
            version = 2;
        } else if (!strcmp(type, "kv-v1")) {
            type = "kv";
            version = 1;
        } else if (!strcmp(type, "kv") || !strcmp(type, "generic")) {
            version = ver && !strcmp(ver, "2") ? 2 : ver && !strcmp(ver, "1") ? 1 : 0;
        } else {
            vd_reply_errorf(r, 400, "plugin not found in the catalog: %s", type);
            free(key);
            return;
        }
        if (m || vd_mount_match(q->nsobj, key, NULL) || has_prefix(key, "sys/") || has_prefix(key, "auth/") ||
            !strcmp(key, "cubbyhole/") || !strcmp(key, "identity/")) {
            vd_reply_errorf(r, 400, "path is already in use at %s", key);
            free(key);
            return;
        }
        struct json_object *nm = vd_mount_add(q->nsobj, key, type, version, vd_str(q->body, "description"));
        int64_t s;
        struct json_object *cfg = vd_get(q->body, "config"), *v;
        if ((v = vd_get(cfg, "default_lease_ttl")) && vd_parse_duration(v, &s) == 0)
            json_object_object_add(vd_get(nm, "config"), "default_lease_ttl", json_object_new_int64(s));
        if ((v = vd_get(cfg, "max_lease_ttl")) && vd_parse_duration(v, &s) == 0)
            json_object_object_add(vd_get(nm, "config"), "max_lease_ttl", json_object_new_int64(s));
        vd_state_dirty();
        vd_reply_204(r);
    } else if (q->op == VD_OP_DELETE) {
        json_object_object_del(ms, key);
        vd_state_dirty();
        vd_reply_204(r);
    } else if (q->op == VD_OP_READ) {
        if (!m)
            vd_reply_errorf(r, 400, "No secret engine mount at %s", key);
        else
            reply_data(q, r, mount_info(m, key, false));
    } else
        vd_reply_error(r, 405, "unsupported operation");
    free(key);
}

static void auths(struct vd_req *q, struct vd_resp *r, const char *sub)
{
    struct json_object *as = vd_get(q->nsobj, "auth");
    if (!*sub) {
        struct json_object *d = json_object_new_object();
        json_object_object_foreach(as, k, a)
        {
            struct json_object *i = json_object_new_object();
            json_object_object_add(i, "type", json_object_get(vd_get(a, "type")));
            json_object_object_add(i, "accessor", json_object_get(vd_get(a, "accessor")));
            json_object_object_add(i, "description", json_object_get(vd_get(a, "description")));
            json_object_object_add(i, "local", json_object_new_boolean(0));
            json_object_object_add(i, "seal_wrap", json_object_new_boolean(0));
            json_object_object_add(i, "options", NULL);
            struct json_object *cfg = json_object_new_object();
            json_object_object_add(cfg, "default_lease_ttl", json_object_new_int(0));
            json_object_object_add(cfg, "max_lease_ttl", json_object_new_int(0));
            json_object_object_add(i, "config", cfg);
            json_object_object_add(d, k, i);
        }
        reply_data(q, r, d);
        return;
    }
    char *key = dir_key(sub);
    if (!key) {
        vd_reply_error(r, 400, "path cannot be empty");
        return;
    }
    if (q->op == VD_OP_UPDATE) {
        const char *type = vd_str(q->body, "type");
        if (!type || (strcmp(type, "approle") != 0 && strcmp(type, "userpass") != 0)) {
            vd_reply_errorf(r, 400, "plugin not found in the catalog: %s", type ? type : "");
        } else if (vd_get(as, key)) {
            vd_reply_errorf(r, 400, "path is already in use at auth/%s", key);
        } else {
            struct json_object *a = json_object_new_object();
            char acc[32];
            snprintf(acc, sizeof acc, "auth_%s_", type);
            vd_random_b62(acc + strlen(acc), 8);
            json_object_object_add(a, "type", json_object_new_string(type));
            json_object_object_add(a, "accessor", json_object_new_string(acc));
            json_object_object_add(a, "description", json_object_new_string(vd_str(q->body, "description") ? vd_str(q->body, "description") : ""));
            json_object_object_add(a, !strcmp(type, "userpass") ? "users" : "roles", json_object_new_object());
            json_object_object_add(as, key, a);
            vd_state_dirty();
            vd_reply_204(r);
        }
    } else if (q->op == VD_OP_DELETE) {
        if (strcmp(key, "token/") != 0)
            json_object_object_del(as, key);
        vd_state_dirty();
        vd_reply_204(r);
    } else
        vd_reply_error(r, 405, "unsupported operation");
    free(key);
}

static void policies(struct vd_req *q, struct vd_resp *r, const char *name, bool legacy)
{
    struct json_object *ps = vd_get(q->nsobj, "policies");
    if (!*name || q->op == VD_OP_LIST) {
        if (q->op != VD_OP_READ && q->op != VD_OP_LIST) {
            vd_reply_error(r, 405, "unsupported operation");
            return;
        }
        struct json_object *keys = json_object_new_array();
        json_object_object_foreach(ps, k, p)
        {
            (void)p;
            json_object_array_add(keys, json_object_new_string(k));
        }
        json_object_array_add(keys, json_object_new_string("root"));
        json_object_array_sort(keys, cmp_str);
        struct json_object *d = json_object_new_object();
        json_object_object_add(d, "keys", keys);
        if (legacy)
            json_object_object_add(d, "policies", json_object_get(keys));
        reply_data(q, r, d);
        return;
    }
    if (q->op == VD_OP_READ) {
        struct json_object *p = vd_get(ps, name);
        if (!strcmp(name, "root")) {
            struct json_object *d = json_object_new_object();
            json_object_object_add(d, "name", json_object_new_string("root"));
            json_object_object_add(d, legacy ? "rules" : "policy", json_object_new_string(""));
            reply_data(q, r, d);
            return;
        }
        if (!p) {
            vd_reply_error(r, 404, NULL);
            return;
        }
        struct json_object *d = json_object_new_object();
        json_object_object_add(d, "name", json_object_new_string(name));
        json_object_object_add(d, legacy ? "rules" : "policy", json_object_get(vd_get(p, "policy")));
        reply_data(q, r, d);
        return;
    }
    if (q->op == VD_OP_UPDATE) {
        if (!strcmp(name, "root")) {
            vd_reply_error(r, 400, "cannot update \"root\" policy");
            return;
        }
        const char *text = vd_str(q->body, "policy");
        if (!text)
            text = vd_str(q->body, "rules");
        if (!text) {
            vd_reply_error(r, 400, "'policy' parameter not supplied or empty");
            return;
        }
        char err[300];
        struct json_object *rules = vd_policy_parse(text, err, sizeof err);
        if (!rules) {
            vd_reply_error(r, 400, err);
            return;
        }
        struct json_object *p = json_object_new_object();
        json_object_object_add(p, "policy", json_object_new_string(text));
        json_object_object_add(p, "rules", rules);
        json_object_object_add(ps, name, p);
        vd_state_dirty();
        vd_reply_204(r);
        return;
    }
    if (q->op == VD_OP_DELETE) {
        if (!strcmp(name, "root") || !strcmp(name, "default")) {
            vd_reply_errorf(r, 400, "cannot delete \"%s\" policy", name);
            return;
        }
        json_object_object_del(ps, name);
        vd_state_dirty();
        vd_reply_204(r);
        return;
    }
    vd_reply_error(r, 405, "unsupported operation");
}

static void namespaces(struct vd_req *q, struct vd_resp *r, const char *sub)
{
    struct json_object *all = vd_get(vd_state, "namespaces");
    size_t nsl = strlen(q->ns);
    if (!*sub || q->op == VD_OP_LIST) {
        if (q->op != VD_OP_LIST) {
            vd_reply_error(r, 405, "unsupported operation");
            return;
        }
        struct json_object *keys = json_object_new_array(), *info = json_object_new_object();
        json_object_object_foreach(all, k, n)
        {
            if (strncmp(k, q->ns, nsl) != 0 || !k[nsl])
                continue;
            const char *rest = k + nsl, *slash = strchr(rest, '/');
            if (slash && slash[1])
                continue; /* grandchildren */
            json_object_array_add(keys, json_object_new_string(rest));
            struct json_object *i = json_object_new_object();
            json_object_object_add(i, "id", json_object_get(vd_get(n, "id")));
            json_object_object_add(i, "path", json_object_new_string(k));
            json_object_object_add(i, "custom_metadata", json_object_get(vd_get(n, "custom_metadata")));
            json_object_object_add(info, rest, i);
        }
        if (json_object_array_length(keys) == 0) {
            json_object_put(keys);
            json_object_put(info);
            vd_reply_error(r, 404, NULL);
            return;
        }
        json_object_array_sort(keys, cmp_str);
        struct json_object *d = json_object_new_object();
        json_object_object_add(d, "keys", keys);
        json_object_object_add(d, "key_info", info);
        reply_data(q, r, d);
        return;
    }
    char *child = dir_key(sub);
    if (!child || strchr(child, '/') != child + strlen(child) - 1) {
        free(child);
        vd_reply_error(r, 400, "invalid namespace name");
        return;
    }
    size_t n = nsl + strlen(child) + 1;
    char *full = malloc(n);
    if (!full)
        abort();
    snprintf(full, n, "%s%s", q->ns, child);
    free(child);
    struct json_object *ns = vd_get(all, full);
    if (q->op == VD_OP_UPDATE || q->op == VD_OP_READ) {
        if (q->op == VD_OP_UPDATE && !ns) {
            ns = vd_ns_new(full);
            struct json_object *cm = vd_get(q->body, "custom_metadata");
            if (cm && json_object_is_type(cm, json_type_object)) {
                struct json_object *c = NULL;
                json_object_deep_copy(cm, &c, NULL);
                json_object_object_add(ns, "custom_metadata", c);
            }
            vd_state_dirty();
        }
        if (!ns) {
            vd_reply_error(r, 404, NULL);
        } else {
            struct json_object *d = json_object_new_object();
            json_object_object_add(d, "id", json_object_get(vd_get(ns, "id")));
            json_object_object_add(d, "path", json_object_new_string(full));
            json_object_object_add(d, "custom_metadata", json_object_get(vd_get(ns, "custom_metadata")));
            reply_data(q, r, d);
        }
    } else if (q->op == VD_OP_DELETE) {
        if (ns) {
            /* the namespace and everything below it */
            struct json_object *gone = json_object_new_array();
            size_t fl = strlen(full);
            json_object_object_foreach(all, k, v)
            {
                (void)v;
                if (!strncmp(k, full, fl))
                    json_object_array_add(gone, json_object_new_string(k));
            }
            for (size_t i = 0; i < json_object_array_length(gone); i++)
                json_object_object_del(all, json_object_get_string(json_object_array_get_idx(gone, i)));
            json_object_put(gone);
            vd_state_dirty();
        }
        vd_reply_204(r);
    } else
        vd_reply_error(r, 405, "unsupported operation");
    free(full);
}

static void capabilities_self(struct vd_req *q, struct vd_resp *r)
{
    struct json_object *paths = vd_str_list(vd_get(q->body, "paths"));
    if (json_object_array_length(paths) == 0) {
        json_object_put(paths);
        paths = vd_str_list(vd_get(q->body, "path"));
    }
    static const char *const caps[] = {"create", "read", "update", "delete", "list", "patch", "sudo"};
    struct json_object *d = json_object_new_object(), *all = NULL;
    for (size_t i = 0; i < json_object_array_length(paths); i++) {
        const char *p = json_object_get_string(json_object_array_get_idx(paths, i));
        struct json_object *c = json_object_new_array();
        if (q->is_root)
            json_object_array_add(c, json_object_new_string("root"));
        else
            for (size_t k = 0; k < sizeof caps / sizeof *caps; k++)
                if (vd_acl_allowed(q, p, caps[k]))
                    json_object_array_add(c, json_object_new_string(caps[k]));
        if (json_object_array_length(c) == 0)
            json_object_array_add(c, json_object_new_string("deny"));
        if (!all)
            all = json_object_get(c);
        json_object_object_add(d, p, c);
    }
    json_object_object_add(d, "capabilities", all ? all : json_object_new_array());
    json_object_put(paths);
    reply_data(q, r, d);
}

bool vd_sys_handle(struct vd_req *q, struct vd_resp *r)
{
    const char *p = q->path + 4;
    if (!strcmp(p, "health")) {
        if (q->op != VD_OP_READ && q->op != VD_OP_HEAD) {
            vd_reply_error(r, 405, NULL);
            return true;
        }
        health(q, r);
        return true;
    }
    if (!strcmp(p, "seal-status")) {
        seal_status(q, r);
        return true;
    }
    if (!strcmp(p, "leader")) {
        struct json_object *d = json_object_new_object();
        json_object_object_add(d, "ha_enabled", json_object_new_boolean(vd_cfg.standby_of != NULL));
        json_object_object_add(d, "is_self", json_object_new_boolean(vd_cfg.standby_of == NULL));
        json_object_object_add(d, "leader_address", json_object_new_string(vd_cfg.standby_of ? vd_cfg.standby_of : ""));
        vd_reply_json(r, 200, d);
        vd_buf_str(&r->body, "\n");
        json_object_put(d);
        return true;
    }
    if (!strcmp(p, "seal") && q->op == VD_OP_UPDATE) {
        json_object_object_add(vd_state, "sealed", json_object_new_boolean(1));
        vd_state_dirty();
        vd_reply_204(r);
        return true;
    }
    if (!strcmp(p, "unseal") && q->op == VD_OP_UPDATE) {
        const char *key = vd_str(q->body, "key");
        if (vd_bool(q->body, "reset", false)) {
            seal_status(q, r);
            return true;
        }
        if (!key || !*key) {
            vd_reply_error(r, 400, "'key' must be specified in request body as JSON, or 'reset' set to true");
            return true;
        }
        if (strcmp(key, vd_cfg.unseal_key) != 0) {
            vd_reply_error(r, 400, "Unseal failed, invalid key");
            return true;
        }
        json_object_object_add(vd_state, "sealed", json_object_new_boolean(0));
        vd_state_dirty();
        seal_status(q, r);
        return true;
    }
    if (has_prefix(p, "internal/ui/mounts")) {
        const char *sub = p + strlen("internal/ui/mounts");
        if (*sub && *sub != '/')
            return false;
        ui_mounts(q, r, *sub ? sub + 1 : "");
        return true;
    }
    if (!strcmp(p, "mounts") || has_prefix(p, "mounts/")) {
        mounts(q, r, p[6] ? p + 7 : "");
        return true;
    }
    if (!strcmp(p, "auth") || has_prefix(p, "auth/")) {
        auths(q, r, p[4] ? p + 5 : "");
        return true;
    }
    if (!strcmp(p, "policies/acl") || has_prefix(p, "policies/acl/")) {
        policies(q, r, p[12] ? p + 13 : "", false);
        return true;
    }
    if (!strcmp(p, "policy") || has_prefix(p, "policy/")) {
        policies(q, r, p[6] ? p + 7 : "", true);
        return true;
    }
    if (!strcmp(p, "namespaces") || has_prefix(p, "namespaces/")) {
        namespaces(q, r, p[10] ? p + 11 : "");
        return true;
    }
    if (!strcmp(p, "capabilities-self") && q->op == VD_OP_UPDATE) {
        capabilities_self(q, r);
        return true;
    }
    return false;
}
