/* vault-dev: the KV secrets engines. Version 2 (data/metadata/delete/undelete/destroy/subkeys/config,
 * CAS, max_versions, delete_version_after, custom_metadata, the exact 404 rules) and version 1
 * (passthrough with advisory lease_duration). */
#include "vd.h"
#include "vd_http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NS 1000000000LL
#define DEFAULT_MAX_VERSIONS 10

static int kv_version(struct json_object *mount)
{
    const char *v = vd_str(vd_get(mount, "options"), "version");
    return v && !strcmp(v, "2") ? 2 : 1;
}

static const char *rel_path(struct vd_req *q, const char *mpath)
{
    size_t ml = strlen(mpath);
    size_t pl = strlen(q->path);
    return pl >= ml ? q->path + ml : "";
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(json_object_get_string(*(struct json_object *const *)a),
                  json_object_get_string(*(struct json_object *const *)b));
}

/* keys directly under prefix (children, "dir/" for deeper ones), sorted; NULL when none */
static struct json_object *list_keys(struct json_object *store, const char *prefix, bool (*keep)(struct json_object *))
{
    struct json_object *keys = json_object_new_array();
    size_t pl = strlen(prefix);
    json_object_object_foreach(store, k, v)
    {
        if (strncmp(k, prefix, pl) != 0 || !k[pl])
            continue;
        if (keep && !keep(v))
            continue;
        const char *rest = k + pl, *slash = strchr(rest, '/');
        char *child = slash ? strndup(rest, (size_t)(slash - rest) + 1) : strdup(rest);
        if (!child)
            abort();
        if (!vd_list_has(keys, child))
            json_object_array_add(keys, json_object_new_string(child));
        free(child);
    }
    if (json_object_array_length(keys) == 0) {
        json_object_put(keys);
        return NULL;
    }
    json_object_array_sort(keys, cmp_str);
    return keys;
}

static void reply_keys(struct vd_req *q, struct vd_resp *r, struct json_object *keys)
{
    if (!keys) {
        vd_reply_error(r, 404, NULL);
        return;
    }
    struct json_object *d = json_object_new_object();
    json_object_object_add(d, "keys", keys);
    struct vd_env e = {0};
    e.data = d;
    e.mount_type = "kv";
    vd_reply_env(r, q, 200, &e, false);
    json_object_put(d);
}

static struct json_object *deep_copy(struct json_object *o)
{
    struct json_object *c = NULL;
    if (o)
        json_object_deep_copy(o, &c, NULL);
    return c;
}

/* ------------------------------------------------------------------ KV v1 */

static void kv1(struct vd_req *q, struct vd_resp *r, struct json_object *mount, const char *rel)
{
    struct json_object *store = vd_get(mount, "data");
    switch (q->op) {
    case VD_OP_READ:
    case VD_OP_HEAD: {
        struct json_object *v = *rel ? vd_get(store, rel) : NULL;
        if (!v) {
            vd_reply_error(r, 404, NULL);
            return;
        }
        int64_t ttl = vd_int(vd_get(mount, "config"), "default_lease_ttl", 0);
        if (!ttl)
            ttl = VD_DEFAULT_TTL;
        struct json_object *t = vd_get(v, "ttl");
        if (!t)
            t = vd_get(v, "lease");
        int64_t s;
        if (t && vd_parse_duration(t, &s) == 0)
            ttl = s;
        struct vd_env e = {0};
        e.data = v;
        e.lease_duration = ttl;
        e.mount_type = "kv";
        vd_reply_env(r, q, 200, &e, false);
        return;
    }
    case VD_OP_UPDATE:
        if (!*rel) {
            vd_reply_error(r, 400, "missing data fields");
            return;
        }
        if (!q->body || json_object_object_length(q->body) == 0) {
            vd_reply_error(r, 400, "missing data fields");
            return;
        }
        if (vd_get(q->body, "ttl")) {
            int64_t s;
            if (vd_parse_duration(vd_get(q->body, "ttl"), &s)) {
                vd_reply_error(r, 400, "failed to parse ttl");
                return;
            }
        }
        json_object_object_add(store, rel, deep_copy(q->body));
        vd_state_dirty();
        vd_reply_204(r);
        return;
    case VD_OP_DELETE:
        if (*rel)
            json_object_object_del(store, rel);
        vd_state_dirty();
        vd_reply_204(r);
        return;
    case VD_OP_LIST: {
        size_t rl = strlen(rel);
        char *prefix = malloc(rl + 2);
        if (!prefix)
            abort();
        memcpy(prefix, rel, rl + 1);
        if (rl && rel[rl - 1] != '/')
            strcat(prefix, "/");
        reply_keys(q, r, list_keys(store, prefix, NULL));
        free(prefix);
        return;
    }
    case VD_OP_PATCH:
        vd_reply_error(r, 405, "unsupported operation");
        return;
    }
}

/* ------------------------------------------------------------------ KV v2 */

static struct json_object *kvcfg(struct json_object *mount) { return vd_get(mount, "kv_config"); }

static void invalid_path(struct vd_req *q, struct vd_resp *r, bool root_op)
{
    struct json_object *w = json_object_new_array();
    if (root_op)
        json_object_array_add(w, json_object_new_string("Non-listing operations on the root of a K/V v2 mount are not supported."));
    else {
        const char *verb = q->op == VD_OP_UPDATE ? "put" : q->op == VD_OP_PATCH ? "patch"
                         : q->op == VD_OP_LIST   ? "list" : q->op == VD_OP_DELETE ? "delete" : "get";
        char msg[300];
        snprintf(msg, sizeof msg,
                 "Invalid path for a versioned K/V secrets engine. See the API docs for the appropriate API "
                 "endpoints to use. If using the Vault CLI, use 'vault kv %s' for this operation.",
                 verb);
        json_object_array_add(w, json_object_new_string(msg));
    }
    struct vd_env e = {0};
    e.warnings = w;
    vd_reply_env(r, q, 404, &e, true);
    json_object_put(w);
}

static bool version_deleted(struct json_object *ver, int64_t now)
{
    int64_t d = vd_int(ver, "deleted", 0);
    return d && d <= now;
}

static struct json_object *version_meta(struct json_object *entry, struct json_object *ver, int64_t n)
{
    struct json_object *m = json_object_new_object();
    json_object_object_add(m, "created_time", vd_time_obj(vd_int(ver, "created", 0)));
    json_object_object_add(m, "custom_metadata", deep_copy(vd_get(entry, "custom_metadata")));
    json_object_object_add(m, "deletion_time", vd_time_obj(vd_int(ver, "deleted", 0)));
    json_object_object_add(m, "destroyed", json_object_new_boolean(vd_bool(ver, "destroyed", false)));
    json_object_object_add(m, "version", json_object_new_int64(n));
    return m;
}

static struct json_object *get_version(struct json_object *entry, int64_t n)
{
    char k[24];
    snprintf(k, sizeof k, "%lld", (long long)n);
    return vd_get(vd_get(entry, "versions"), k);
}

static int64_t max_versions(struct json_object *mount, struct json_object *entry)
{
    int64_t m = vd_int(entry, "max_versions", 0);
    if (!m)
        m = vd_int(kvcfg(mount), "max_versions", 0);
    return m ? m : DEFAULT_MAX_VERSIONS;
}

static int64_t dva(struct json_object *mount, struct json_object *entry)
{
    int64_t d = vd_int(entry, "delete_version_after", 0);
    if (!d)
        d = vd_int(kvcfg(mount), "delete_version_after", 0);
    return d;
}

static struct json_object *new_entry(int64_t now)
{
    struct json_object *e = json_object_new_object();
    json_object_object_add(e, "versions", json_object_new_object());
    json_object_object_add(e, "current_version", json_object_new_int64(0));
    json_object_object_add(e, "oldest_version", json_object_new_int64(0));
    json_object_object_add(e, "created", json_object_new_int64(now));
    json_object_object_add(e, "updated", json_object_new_int64(now));
    json_object_object_add(e, "max_versions", json_object_new_int64(0));
    json_object_object_add(e, "cas_required", json_object_new_boolean(0));
    json_object_object_add(e, "delete_version_after", json_object_new_int64(0));
    json_object_object_add(e, "custom_metadata", NULL);
    return e;
}

/* version selected by ?version= (0 = current); -1 on a bad value */
static int64_t requested_version(struct vd_req *q)
{
    const char *v = vd_query(q, "version");
    if (!v || !*v)
        return 0;
    char *end;
    long long x = strtoll(v, &end, 10);
    return *end || x < 0 ? -1 : x;
}

static void data_read(struct vd_req *q, struct vd_resp *r, struct json_object *store, const char *key, bool subkeys)
{
    struct json_object *entry = vd_get(store, key);
    int64_t want = requested_version(q);
    if (want < 0) {
        vd_reply_error(r, 400, "error converting input for field \"version\": invalid syntax");
        return;
    }
    if (!entry) {
        vd_reply_error(r, 404, NULL);
        return;
    }
    int64_t n = want ? want : vd_int(entry, "current_version", 0);
    struct json_object *ver = get_version(entry, n);
    if (!ver) {
        vd_reply_error(r, 404, NULL);
        return;
    }
    struct json_object *d = json_object_new_object();
    struct vd_env e = {0};
    e.data = d;
    if (version_deleted(ver, q->now) || vd_bool(ver, "destroyed", false)) {
        json_object_object_add(d, subkeys ? "subkeys" : "data", NULL);
        json_object_object_add(d, "metadata", version_meta(entry, ver, n));
        vd_reply_env(r, q, 404, &e, true);
        json_object_put(d);
        return;
    }
    struct json_object *val = deep_copy(vd_get(ver, "data"));
    if (subkeys) {
        /* every leaf replaced by null, objects kept */
        struct json_object *stack[64];
        int sp = 0;
        if (val)
            stack[sp++] = val;
        while (sp) {
            struct json_object *o = stack[--sp];
            json_object_object_foreach(o, k, v)
            {
                if (v && json_object_is_type(v, json_type_object) && sp < 64)
                    stack[sp++] = v;
                else
                    json_object_object_add(o, k, NULL);
            }
        }
    }
    json_object_object_add(d, subkeys ? "subkeys" : "data", val);
    json_object_object_add(d, "metadata", version_meta(entry, ver, n));
    e.mount_type = "kv";
    vd_reply_env(r, q, 200, &e, false);
    json_object_put(d);
}

static void prune(struct json_object *mount, struct json_object *entry)
{
    int64_t max = max_versions(mount, entry);
    int64_t cur = vd_int(entry, "current_version", 0);
    int64_t oldest = vd_int(entry, "oldest_version", 0);
    if (oldest == 0)
        oldest = 1;
    struct json_object *vers = vd_get(entry, "versions");
    while (cur - oldest >= max) {
        char k[24];
        snprintf(k, sizeof k, "%lld", (long long)oldest);
        json_object_object_del(vers, k);
        oldest++;
    }
    json_object_object_add(entry, "oldest_version", json_object_new_int64(oldest));
}

static bool cas_check(struct vd_req *q, struct vd_resp *r, struct json_object *mount, struct json_object *entry)
{
    struct json_object *cas = vd_get(vd_get(q->body, "options"), "cas");
    bool required = vd_bool(kvcfg(mount), "cas_required", false) || vd_bool(entry, "cas_required", false);
    if (cas) {
        int64_t c;
        if (vd_as_int(cas, &c) || c < 0) {
            vd_reply_error(r, 400, "error parsing check-and-set parameter");
            return false;
        }
        if (c != vd_int(entry, "current_version", 0)) {
            vd_reply_error(r, 400, "check-and-set parameter did not match the current version");
            return false;
        }
    } else if (required) {
        vd_reply_error(r, 400, "check-and-set parameter required for this call");
        return false;
    }
    return true;
}

static void add_version(struct vd_req *q, struct vd_resp *r, struct json_object *mount,
                        struct json_object *store, const char *key, struct json_object *entry,
                        struct json_object *data /* owned */)
{
    if (!entry) {
        entry = new_entry(q->now);
        json_object_object_add(store, key, entry);
    }
    int64_t n = vd_int(entry, "current_version", 0) + 1;
    struct json_object *ver = json_object_new_object();
    int64_t d = dva(mount, entry);
    json_object_object_add(ver, "created", json_object_new_int64(q->now));
    json_object_object_add(ver, "deleted", json_object_new_int64(d ? q->now + d * NS : 0));
    json_object_object_add(ver, "destroyed", json_object_new_boolean(0));
    json_object_object_add(ver, "data", data);
    char k[24];
    snprintf(k, sizeof k, "%lld", (long long)n);
    json_object_object_add(vd_get(entry, "versions"), k, ver);
    json_object_object_add(entry, "current_version", json_object_new_int64(n));
    json_object_object_add(entry, "updated", json_object_new_int64(q->now));
    prune(mount, entry);
    vd_state_dirty();
    struct json_object *m = version_meta(entry, ver, n);
    struct vd_env e = {0};
    e.data = m;
    e.mount_type = "kv";
    vd_reply_env(r, q, 200, &e, false);
    json_object_put(m);
}

static void data_write(struct vd_req *q, struct vd_resp *r, struct json_object *mount,
                       struct json_object *store, const char *key)
{
    struct json_object *data = vd_get(q->body, "data");
    if (!data || json_object_is_type(data, json_type_null)) {
        vd_reply_error(r, 400, "no data provided");
        return;
    }
    if (!json_object_is_type(data, json_type_object)) {
        vd_reply_error(r, 400, "error converting input for field \"data\": expected a map");
        return;
    }
    struct json_object *entry = vd_get(store, key);
    if (!cas_check(q, r, mount, entry))
        return;
    add_version(q, r, mount, store, key, entry, deep_copy(data));
}

/* RFC 7386 merge patch of target (modified in place) with patch */
static void merge_patch(struct json_object *target, struct json_object *patch)
{
    json_object_object_foreach(patch, k, v)
    {
        if (!v || json_object_is_type(v, json_type_null))
            json_object_object_del(target, k);
        else if (json_object_is_type(v, json_type_object)) {
            struct json_object *t = vd_get(target, k);
            if (!t || !json_object_is_type(t, json_type_object)) {
                t = json_object_new_object();
                json_object_object_add(target, k, t);
            }
            merge_patch(t, v);
        } else
            json_object_object_add(target, k, deep_copy(v));
    }
}

static void data_patch(struct vd_req *q, struct vd_resp *r, struct json_object *mount,
                       struct json_object *store, const char *key)
{
    struct json_object *data = vd_get(q->body, "data");
    if (!data || !json_object_is_type(data, json_type_object)) {
        vd_reply_error(r, 400, "no data provided");
        return;
    }
    struct json_object *entry = vd_get(store, key);
    struct json_object *cur = entry ? get_version(entry, vd_int(entry, "current_version", 0)) : NULL;
    if (!cur) {
        r->status = 404;
        r->body.len = 0;
        return;
    }
    if (version_deleted(cur, q->now) || vd_bool(cur, "destroyed", false)) {
        struct json_object *m = version_meta(entry, cur, vd_int(entry, "current_version", 0));
        struct vd_env e = {0};
        e.data = m;
        vd_reply_env(r, q, 404, &e, true);
        json_object_put(m);
        return;
    }
    if (!cas_check(q, r, mount, entry))
        return;
    struct json_object *merged = deep_copy(vd_get(cur, "data"));
    if (!merged)
        merged = json_object_new_object();
    merge_patch(merged, data);
    add_version(q, r, mount, store, key, entry, merged);
}

/* versions list from {"versions":[1,2]} or "1,2"; NULL when absent or empty */
static struct json_object *versions_arg(struct vd_req *q)
{
    struct json_object *v = vd_get(q->body, "versions");
    struct json_object *out = json_object_new_array();
    if (v && json_object_is_type(v, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(v); i++) {
            int64_t n;
            if (vd_as_int(json_object_array_get_idx(v, i), &n) == 0)
                json_object_array_add(out, json_object_new_int64(n));
        }
    } else if (v) {
        struct json_object *l = vd_str_list(v);
        for (size_t i = 0; i < json_object_array_length(l); i++) {
            int64_t n;
            if (vd_as_int(json_object_array_get_idx(l, i), &n) == 0)
                json_object_array_add(out, json_object_new_int64(n));
        }
        json_object_put(l);
        if (json_object_is_type(v, json_type_int))
            json_object_array_add(out, json_object_new_int64(json_object_get_int64(v)));
    }
    if (json_object_array_length(out) == 0) {
        json_object_put(out);
        return NULL;
    }
    return out;
}

enum vop { V_DELETE, V_UNDELETE, V_DESTROY };

static void versions_op(struct vd_req *q, struct vd_resp *r, struct json_object *mount,
                        struct json_object *store, const char *key, enum vop op)
{
    struct json_object *vs = versions_arg(q);
    if (!vs) {
        vd_reply_error(r, 400, op == V_DESTROY ? "no version number provided" : "No version number provided");
        return;
    }
    struct json_object *entry = vd_get(store, key);
    for (size_t i = 0; entry && i < json_object_array_length(vs); i++) {
        struct json_object *ver = get_version(entry, json_object_get_int64(json_object_array_get_idx(vs, i)));
        if (!ver || vd_bool(ver, "destroyed", false))
            continue;
        if (op == V_DELETE && !version_deleted(ver, q->now))
            json_object_object_add(ver, "deleted", json_object_new_int64(q->now));
        else if (op == V_UNDELETE) {
            int64_t d = dva(mount, entry);
            json_object_object_add(ver, "deleted", json_object_new_int64(d ? q->now + d * NS : 0));
        } else if (op == V_DESTROY) {
            json_object_object_add(ver, "destroyed", json_object_new_boolean(1));
            json_object_object_add(ver, "data", NULL);
        }
    }
    json_object_put(vs);
    vd_state_dirty();
    vd_reply_204(r);
}

static bool custom_md_ok(struct json_object *cm, char *msg, size_t ml)
{
    if (!json_object_is_type(cm, json_type_object)) {
        snprintf(msg, ml, "custom_metadata must be a map of strings");
        return false;
    }
    if (json_object_object_length(cm) > 64) {
        snprintf(msg, ml, "1 error occurred:\n\t* custom_metadata may contain at most 64 keys\n\n");
        return false;
    }
    json_object_object_foreach(cm, k, v)
    {
        if (strlen(k) > 128) {
            snprintf(msg, ml, "1 error occurred:\n\t* length of key \"%.20s...\" is %zu but max is 128\n\n", k, strlen(k));
            return false;
        }
        if (!v || !json_object_is_type(v, json_type_string)) {
            snprintf(msg, ml, "custom_metadata values must be strings");
            return false;
        }
        /* Vault (path_metadata.go, vault-http-api.md 1.5): keys 1-128 and values 1-512
           characters, printable only; an empty key or value is refused, not stored */
        const char *sv = json_object_get_string(v);
        if (k[0] == '\0' || sv[0] == '\0') {
            snprintf(msg, ml, "1 error occurred:\n\t* length of %s \"%.20s\" is 0 but must be 0 < len <= %d\n\n",
                     k[0] ? "value for key" : "key", k, k[0] ? 512 : 128);
            return false;
        }
        for (const char *c = k; *c; c++)
            if ((unsigned char)*c < 0x20 || *c == 0x7f) {
                snprintf(msg, ml, "1 error occurred:\n\t* key contains unprintable characters\n\n");
                return false;
            }
        for (const char *c = sv; *c; c++)
            if ((unsigned char)*c < 0x20 || *c == 0x7f) {
                snprintf(msg, ml, "1 error occurred:\n\t* value for key \"%.20s\" contains unprintable characters\n\n", k);
                return false;
            }
        if (strlen(json_object_get_string(v)) > 512) {
            snprintf(msg, ml, "1 error occurred:\n\t* length of value for key \"%s\" is %zu but max is 512\n\n", k,
                     strlen(json_object_get_string(v)));
            return false;
        }
    }
    return true;
}

static bool metadata_fields(struct vd_req *q, struct vd_resp *r, struct json_object *entry, bool patch)
{
    struct json_object *b = q->body;
    struct json_object *v;
    int64_t x;
    char msg[300];
    (void)patch;
    if ((v = vd_get(b, "max_versions"))) {
        if (vd_as_int(v, &x) || x < 0) {
            vd_reply_error(r, 400, "max_versions must be a non-negative integer");
            return false;
        }
        json_object_object_add(entry, "max_versions", json_object_new_int64(x));
    }
    if ((v = vd_get(b, "cas_required"))) {
        bool bb;
        if (vd_as_bool(v, &bb)) {
            vd_reply_error(r, 400, "cas_required must be a boolean");
            return false;
        }
        json_object_object_add(entry, "cas_required", json_object_new_boolean(bb));
    }
    if ((v = vd_get(b, "delete_version_after"))) {
        if (vd_parse_duration(v, &x)) {
            vd_reply_error(r, 400, "delete_version_after must be a duration");
            return false;
        }
        json_object_object_add(entry, "delete_version_after", json_object_new_int64(x));
    }
    if ((v = vd_get(b, "custom_metadata")) && !json_object_is_type(v, json_type_null)) {
        if (!custom_md_ok(v, msg, sizeof msg)) {
            vd_reply_error(r, 400, msg);
            return false;
        }
        if (patch && vd_get(entry, "custom_metadata") &&
            json_object_is_type(vd_get(entry, "custom_metadata"), json_type_object))
            merge_patch(vd_get(entry, "custom_metadata"), v);
        else
            json_object_object_add(entry, "custom_metadata", deep_copy(v));
    }
    return true;
}

static void metadata_read(struct vd_req *q, struct vd_resp *r, struct json_object *mount, struct json_object *entry)
{
    (void)mount;
    struct json_object *d = json_object_new_object();
    char dur[32];
    json_object_object_add(d, "cas_required", json_object_new_boolean(vd_bool(entry, "cas_required", false)));
    json_object_object_add(d, "created_time", vd_time_obj(vd_int(entry, "created", 0)));
    json_object_object_add(d, "current_version", json_object_new_int64(vd_int(entry, "current_version", 0)));
    json_object_object_add(d, "custom_metadata", deep_copy(vd_get(entry, "custom_metadata")));
    vd_duration_string(vd_int(entry, "delete_version_after", 0), dur);
    json_object_object_add(d, "delete_version_after", json_object_new_string(dur));
    json_object_object_add(d, "max_versions", json_object_new_int64(vd_int(entry, "max_versions", 0)));
    json_object_object_add(d, "oldest_version", json_object_new_int64(vd_int(entry, "oldest_version", 0)));
    json_object_object_add(d, "updated_time", vd_time_obj(vd_int(entry, "updated", 0)));
    struct json_object *vs = json_object_new_object();
    json_object_object_foreach(vd_get(entry, "versions"), k, ver)
    {
        struct json_object *m = json_object_new_object();
        json_object_object_add(m, "created_time", vd_time_obj(vd_int(ver, "created", 0)));
        json_object_object_add(m, "deletion_time", vd_time_obj(vd_int(ver, "deleted", 0)));
        json_object_object_add(m, "destroyed", json_object_new_boolean(vd_bool(ver, "destroyed", false)));
        json_object_object_add(vs, k, m);
    }
    json_object_object_add(d, "versions", vs);
    struct vd_env e = {0};
    e.data = d;
    e.mount_type = "kv";
    vd_reply_env(r, q, 200, &e, false);
    json_object_put(d);
}

static bool not_all_deleted(struct json_object *entry)
{
    int64_t now = vd_now_ns();
    json_object_object_foreach(vd_get(entry, "versions"), k, ver)
    {
        (void)k;
        if (!version_deleted(ver, now) && !vd_bool(ver, "destroyed", false))
            return true;
    }
    return false;
}

static void kv2(struct vd_req *q, struct vd_resp *r, struct json_object *mount, const char *rel)
{
    struct json_object *store = vd_get(mount, "data");
    static const char *const roots[] = {"data", "metadata", "delete", "undelete", "destroy", "subkeys"};
    if (!strcmp(rel, "config")) {
        struct json_object *c = kvcfg(mount);
        if (q->op == VD_OP_READ) {
            struct json_object *d = json_object_new_object();
            char dur[32];
            vd_duration_string(vd_int(c, "delete_version_after", 0), dur);
            json_object_object_add(d, "cas_required", json_object_new_boolean(vd_bool(c, "cas_required", false)));
            json_object_object_add(d, "delete_version_after", json_object_new_string(dur));
            json_object_object_add(d, "max_versions", json_object_new_int64(vd_int(c, "max_versions", 0)));
            struct vd_env e = {0};
            e.data = d;
            e.mount_type = "kv";
            vd_reply_env(r, q, 200, &e, false);
            json_object_put(d);
        } else if (q->op == VD_OP_UPDATE) {
            if (metadata_fields(q, r, c, false)) {
                vd_state_dirty();
                vd_reply_204(r);
            }
        } else
            vd_reply_error(r, 405, "unsupported operation");
        return;
    }
    for (size_t i = 0; i < sizeof roots / sizeof *roots; i++) {
        size_t l = strlen(roots[i]);
        if (strncmp(rel, roots[i], l) != 0 || (rel[l] != '/' && rel[l] != 0))
            continue;
        const char *key = rel[l] ? rel + l + 1 : "";
        if (!*key && !(i == 1 && q->op == VD_OP_LIST)) {
            invalid_path(q, r, true);
            return;
        }
        switch (i) {
        case 0: /* data */
            if (q->op == VD_OP_READ || q->op == VD_OP_HEAD)
                data_read(q, r, store, key, false);
            else if (q->op == VD_OP_UPDATE)
                data_write(q, r, mount, store, key);
            else if (q->op == VD_OP_PATCH)
                data_patch(q, r, mount, store, key);
            else if (q->op == VD_OP_DELETE) {
                struct json_object *entry = vd_get(store, key);
                struct json_object *ver = entry ? get_version(entry, vd_int(entry, "current_version", 0)) : NULL;
                if (ver && !vd_bool(ver, "destroyed", false) && !version_deleted(ver, q->now)) {
                    json_object_object_add(ver, "deleted", json_object_new_int64(q->now));
                    vd_state_dirty();
                }
                vd_reply_204(r);
            } else
                invalid_path(q, r, false);
            return;
        case 1: { /* metadata */
            struct json_object *entry = *key ? vd_get(store, key) : NULL;
            if (q->op == VD_OP_LIST) {
                size_t kl = strlen(key);
                char *prefix = malloc(kl + 2);
                if (!prefix)
                    abort();
                memcpy(prefix, key, kl + 1);
                if (kl && key[kl - 1] != '/')
                    strcat(prefix, "/");
                const char *ex = vd_query(q, "exclude_deleted");
                bool exclude = ex && (!strcmp(ex, "true") || !strcmp(ex, "1"));
                reply_keys(q, r, list_keys(store, prefix, exclude ? not_all_deleted : NULL));
                free(prefix);
            } else if (q->op == VD_OP_READ || q->op == VD_OP_HEAD) {
                if (!entry)
                    vd_reply_error(r, 404, NULL);
                else
                    metadata_read(q, r, mount, entry);
            } else if (q->op == VD_OP_UPDATE || q->op == VD_OP_PATCH) {
                bool created = false;
                if (!entry) {
                    if (q->op == VD_OP_PATCH) {
                        vd_reply_error(r, 404, NULL);
                        return;
                    }
                    entry = new_entry(q->now);
                    created = true;
                }
                if (!metadata_fields(q, r, entry, q->op == VD_OP_PATCH)) {
                    if (created)
                        json_object_put(entry);
                    return;
                }
                json_object_object_add(entry, "updated", json_object_new_int64(q->now));
                if (created)
                    json_object_object_add(store, key, entry);
                else if (vd_int(entry, "current_version", 0))
                    prune(mount, entry);
                vd_state_dirty();
                vd_reply_204(r);
            } else if (q->op == VD_OP_DELETE) {
                json_object_object_del(store, key);
                vd_state_dirty();
                vd_reply_204(r);
            }
            return;
        }
        case 2:
        case 3:
        case 4:
            if (q->op != VD_OP_UPDATE) {
                invalid_path(q, r, false);
                return;
            }
            versions_op(q, r, mount, store, key, i == 2 ? V_DELETE : i == 3 ? V_UNDELETE : V_DESTROY);
            return;
        case 5:
            if (q->op != VD_OP_READ && q->op != VD_OP_HEAD) {
                invalid_path(q, r, false);
                return;
            }
            data_read(q, r, store, key, true);
            return;
        }
    }
    invalid_path(q, r, !*rel);
}

bool vd_kv_exists(struct vd_req *q, struct json_object *mount, const char *mpath)
{
    const char *rel = rel_path(q, mpath);
    struct json_object *store = vd_get(mount, "data");
    if (kv_version(mount) == 1)
        return vd_get(store, rel) != NULL;
    if (!strncmp(rel, "data/", 5))
        return vd_get(store, rel + 5) != NULL;
    if (!strncmp(rel, "metadata/", 9))
        return vd_get(store, rel + 9) != NULL;
    return true;
}

void vd_kv_handle(struct vd_req *q, struct vd_resp *r, struct json_object *mount, const char *mpath)
{
    const char *type = vd_str(mount, "type");
    if (!type || (strcmp(type, "kv") && strcmp(type, "generic"))) {
        vd_reply_error(r, 404, NULL);
        return;
    }
    const char *rel = rel_path(q, mpath);
    if (kv_version(mount) == 2)
        kv2(q, r, mount, rel);
    else
        kv1(q, r, mount, rel);
}
