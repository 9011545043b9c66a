/* vault-dev: the state tree (namespaces, mounts, tokens), and its JSON state file. */
#include "vd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

pthread_mutex_t vd_lock = PTHREAD_MUTEX_INITIALIZER;
struct json_object *vd_state;
struct vd_config vd_cfg;
static bool dirty;

static struct json_object *obj(void) { return json_object_new_object(); }

static void add_policy(struct json_object *ns, const char *name, const char *text)
{
    char err[256];
    struct json_object *rules = vd_policy_parse(text, err, sizeof err);
    struct json_object *p = obj();
    json_object_object_add(p, "policy", json_object_new_string(text));
    json_object_object_add(p, "rules", rules ? rules : json_object_new_array());
    json_object_object_add(vd_get(ns, "policies"), name, p);
}

struct json_object *vd_ns_new(const char *path)
{
    struct json_object *ns = obj();
    char id[8];
    vd_random_b62(id, 5);
    json_object_object_add(ns, "id", json_object_new_string(*path ? id : "root"));
    json_object_object_add(ns, "path", json_object_new_string(path));
    json_object_object_add(ns, "custom_metadata", obj());
    json_object_object_add(ns, "mounts", obj());
    json_object_object_add(ns, "auth", obj());
    json_object_object_add(ns, "policies", obj());
    struct json_object *tok = obj();
    char acc[32];
    snprintf(acc, sizeof acc, "auth_token_");
    vd_random_b62(acc + strlen(acc), 8);
    json_object_object_add(tok, "type", json_object_new_string("token"));
    json_object_object_add(tok, "accessor", json_object_new_string(acc));
    json_object_object_add(tok, "description", json_object_new_string("token based credentials"));
    json_object_object_add(vd_get(ns, "auth"), "token/", tok);
    add_policy(ns, "default", vd_default_policy);
    json_object_object_add(json_object_object_get(vd_state, "namespaces"), path, ns);
    return ns;
}

struct json_object *vd_ns_get(const char *path) { return vd_get(vd_get(vd_state, "namespaces"), path); }

struct json_object *vd_mount_add(struct json_object *ns, const char *path, const char *type,
                                 int version, const char *description)
{
    struct json_object *m = obj();
    char acc[32], uuid[37];
    snprintf(acc, sizeof acc, "%s_", type);
    vd_random_b62(acc + strlen(acc), 8);
    vd_uuid(uuid);
    json_object_object_add(m, "type", json_object_new_string(type));
    json_object_object_add(m, "description", json_object_new_string(description ? description : ""));
    json_object_object_add(m, "accessor", json_object_new_string(acc));
    json_object_object_add(m, "uuid", json_object_new_string(uuid));
    struct json_object *opts = NULL;
    if (version) {
        opts = obj();
        char v[4];
        snprintf(v, sizeof v, "%d", version);
        json_object_object_add(opts, "version", json_object_new_string(v));
    }
    json_object_object_add(m, "options", opts);
    struct json_object *cfg = obj();
    json_object_object_add(cfg, "default_lease_ttl", json_object_new_int64(0));
    json_object_object_add(cfg, "max_lease_ttl", json_object_new_int64(0));
    json_object_object_add(m, "config", cfg);
    json_object_object_add(m, "data", obj());
    struct json_object *kvc = obj();
    json_object_object_add(kvc, "max_versions", json_object_new_int64(0));
    json_object_object_add(kvc, "cas_required", json_object_new_boolean(0));
    json_object_object_add(kvc, "delete_version_after", json_object_new_int64(0));
    json_object_object_add(m, "kv_config", kvc);
    json_object_object_add(vd_get(ns, "mounts"), path, m);
    return m;
}

struct json_object *vd_mount_match(struct json_object *ns, const char *path, const char **mount_path)
{
    struct json_object *best = NULL;
    size_t best_len = 0;
    size_t pl = strlen(path);
    json_object_object_foreach(vd_get(ns, "mounts"), k, m)
    {
        size_t kl = strlen(k);
        bool hit = (pl >= kl && strncmp(path, k, kl) == 0) ||
                   (pl + 1 == kl && strncmp(path, k, pl) == 0); /* "secret" for "secret/" */
        if (hit && kl > best_len) {
            best = m;
            best_len = kl;
            if (mount_path)
                *mount_path = k;
        }
    }
    return best;
}

void vd_state_init(void)
{
    vd_state = obj();
    json_object_object_add(vd_state, "namespaces", obj());
    json_object_object_add(vd_state, "tokens", obj());
    json_object_object_add(vd_state, "sealed", json_object_new_boolean(0));
    vd_ns_new("");
}

int vd_state_load(const char *file)
{
    struct json_object *s = json_object_from_file(file);
    if (!s)
        return access(file, F_OK) == 0 ? -1 : 1; /* 1: no file yet */
    struct json_object *nss = vd_get(s, "namespaces");
    if (!nss || !json_object_is_type(nss, json_type_object) || !vd_get(nss, "") ||
        !json_object_is_type(vd_get(s, "tokens"), json_type_object)) {
        json_object_put(s);
        return -1;
    }
    json_object_put(vd_state);
    vd_state = s;
    return 0;
}

int vd_state_save(const char *file)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", file);
    if (json_object_to_file_ext(tmp, vd_state, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE) != 0)
        return -1;
    chmod(tmp, 0600); /* it holds tokens and secrets in clear */
    return rename(tmp, file);
}

void vd_state_dirty(void) { dirty = true; }

void vd_state_flush_if_dirty(void)
{
    if (dirty && vd_cfg.state_file) {
        if (vd_state_save(vd_cfg.state_file) != 0)
            fprintf(stderr, "vault-dev: cannot save state to %s\n", vd_cfg.state_file);
    }
    dirty = false;
}
