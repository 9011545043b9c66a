/*
 * vault-dev: the userpass auth method, the way Vault serves it (enable with POST sys/auth/<path>
 * {"type":"userpass"}):
 *   POST   auth/<mount>/users/<name>  {"password", "token_policies" | "policies", "token_ttl"}
 *   GET    auth/<mount>/users/<name>  -> token_policies, token_ttl (never the password)
 *   LIST   auth/<mount>/users
 *   DELETE auth/<mount>/users/<name>
 *   POST   auth/<mount>/login/<name>  {"password"} -> auth (display_name "<mount>-<name>",
 *          metadata.username); a wrong name or password: 400 "invalid username or password".
 * Passwords are kept as PBKDF2-HMAC-SHA256 (salted), compared in constant time. Called with
 * vd_lock held, like every handler.
 */
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>

#include "vd.h"

#define UP_ITER 4096

static void hexs(const unsigned char *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
}

static void hash_pw(const char *pw, const char *salt_hex, char out[65])
{
    unsigned char dk[32];
    PKCS5_PBKDF2_HMAC(pw, (int)strlen(pw), (const unsigned char *)salt_hex, (int)strlen(salt_hex), UP_ITER,
                      EVP_sha256(), sizeof dk, dk);
    hexs(dk, sizeof dk, out);
}

static void reply_data(struct vd_req *q, struct vd_resp *r, struct json_object *data)
{
    struct vd_env e = { 0 };
    e.data = data;
    vd_reply_env(r, q, 200, &e, false);
    json_object_put(data);
}

static struct json_object *policies_of(struct json_object *b)
{
    struct json_object *src = vd_get(b, "token_policies") ? vd_get(b, "token_policies") : vd_get(b, "policies");
    return src ? vd_str_list(src) : json_object_new_array();
}

static void user_write(struct vd_req *q, struct vd_resp *r, struct json_object *users, const char *name)
{
    struct json_object *u = vd_get(users, name);
    bool created = u == NULL;
    const char *pw = vd_str(q->body, "password");
    if (created && (!pw || !*pw)) {
        vd_reply_error(r, 400, "missing password");
        return;
    }
    if (created)
        u = json_object_new_object();
    if (pw && *pw) {
        unsigned char salt[16];
        char salt_hex[33], h[65];
        RAND_bytes(salt, sizeof salt);
        hexs(salt, sizeof salt, salt_hex);
        hash_pw(pw, salt_hex, h);
        json_object_object_add(u, "salt", json_object_new_string(salt_hex));
        json_object_object_add(u, "hash", json_object_new_string(h));
    }
    if (vd_get(q->body, "token_policies") || vd_get(q->body, "policies") || created)
        json_object_object_add(u, "token_policies", policies_of(q->body));
    int64_t ttl = 0;
    if (vd_get(q->body, "token_ttl") && vd_parse_duration(vd_get(q->body, "token_ttl"), &ttl) == 0)
        json_object_object_add(u, "token_ttl", json_object_new_int64(ttl));
    if (created)
        json_object_object_add(users, name, u);
    vd_state_dirty();
    vd_reply_204(r);
}

static void login(struct vd_req *q, struct vd_resp *r, struct json_object *users, const char *mpath,
                  const char *name)
{
    struct json_object *u = vd_get(users, name);
    const char *pw = vd_str(q->body, "password");
    char h[65] = "";
    if (u && pw)
        hash_pw(pw, vd_str(u, "salt") ? vd_str(u, "salt") : "", h);
    const char *want = u ? vd_str(u, "hash") : NULL;
    if (!u || !pw || !want || strlen(want) != 64 || CRYPTO_memcmp(h, want, 64) != 0) {
        vd_reply_error(r, 400, "invalid username or password");
        return;
    }
    struct json_object *pol = json_object_new_array();
    json_object_array_add(pol, json_object_new_string("default"));
    struct json_object *up = vd_get(u, "token_policies");
    for (size_t i = 0; up && i < json_object_array_length(up); i++) {
        const char *p = json_object_get_string(json_object_array_get_idx(up, i));
        if (p && strcmp(p, "default") != 0)
            json_object_array_add(pol, json_object_new_string(p));
    }
    int64_t ttl = vd_int(u, "token_ttl", 0);
    struct json_object *meta = json_object_new_object();
    json_object_object_add(meta, "username", json_object_new_string(name));
    char path[400], dn[300], id[32];
    snprintf(path, sizeof path, "auth/%slogin/%s", mpath, name);
    snprintf(dn, sizeof dn, "%.*s-%s", (int)(strlen(mpath) ? strlen(mpath) - 1 : 0), mpath, name);
    memcpy(id, "hvs.", 4);
    vd_random_b62(id + 4, 24);
    struct json_object *t = vd_token_new(pol, ttl ? ttl : VD_DEFAULT_TTL, true, 0, NULL, path, q->ns, meta, dn, 0, 0,
                                         id);
    json_object_put(pol);
    json_object_put(meta);
    struct vd_env e = { 0 };
    e.auth = vd_token_auth(t, id, vd_int(t, "creation_ns", q->now));
    vd_reply_env(r, q, 200, &e, false);
    json_object_put(e.auth);
}

bool vd_userpass_handle(struct vd_req *q, struct vd_resp *r, struct json_object *mount, const char *mpath,
                        const char *sub)
{
    if (!vd_get(mount, "users"))
        json_object_object_add(mount, "users", json_object_new_object());
    struct json_object *users = vd_get(mount, "users");
    if (!strncmp(sub, "login/", 6) && sub[6] && !strchr(sub + 6, '/') && q->op == VD_OP_UPDATE) {
        login(q, r, users, mpath, sub + 6);
        return true;
    }
    if ((!strcmp(sub, "users") || !strcmp(sub, "users/")) && q->op == VD_OP_LIST) {
        struct json_object *keys = json_object_new_array();
        json_object_object_foreach(users, k, v)
        {
            (void)v;
            json_object_array_add(keys, json_object_new_string(k));
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
    if (strncmp(sub, "users/", 6) != 0 || !sub[6] || strchr(sub + 6, '/'))
        return false;
    const char *name = sub + 6;
    struct json_object *u = vd_get(users, name);
    if (q->op == VD_OP_UPDATE) {
        user_write(q, r, users, name);
    } else if (q->op == VD_OP_READ) {
        if (!u) {
            vd_reply_error(r, 404, NULL);
            return true;
        }
        struct json_object *d = json_object_new_object();
        json_object_object_add(d, "token_policies", json_object_get(vd_get(u, "token_policies")));
        json_object_object_add(d, "token_ttl", json_object_new_int64(vd_int(u, "token_ttl", 0)));
        reply_data(q, r, d);
    } else if (q->op == VD_OP_DELETE) {
        json_object_object_del(users, name);
        vd_state_dirty();
        vd_reply_204(r);
    } else
        vd_reply_error(r, 405, "unsupported operation");
    return true;
}
