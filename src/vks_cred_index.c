/*
 * vks_cred_index: the username index that makes "unique under the prefix" atomic (docs/credentials.md
 * "Usernames are unique: the index"; design: docs/internals/cred.md). One KV v2 record per username at
 * <mount>/data/vks-index/<prefix>usernames/<hex of the lowercased username>, data
 * {"name":NAME,"username":U,"claimed":RFC3339}, claimed with check-and-set cas 0 before the
 * credential's data is written. Thread-safety and ownership as vks_cred.h (one ctx per thread).
 */
#include <ctype.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "vks_cred_int.h"

/* vks-index/<prefix>usernames/<hex(lowercase(username))> */
static void index_path(const struct vks_cred_ctx *ctx, const char *username, char *out, size_t cap)
{
    static const char hx[] = "0123456789abcdef";
    int n = snprintf(out, cap, "vks-index/%susernames/", ctx->prefix);
    for (const unsigned char *p = (const unsigned char *)username; *p && n >= 0 && (size_t)n + 3 <= cap; p++) {
        unsigned char c = (unsigned char)tolower(*p);
        out[n++] = hx[c >> 4];
        out[n++] = hx[c & 15];
        out[n] = '\0';
    }
}

static vks_status claim_json(const char *name, const char *username, char **out, struct vks_err *err)
{
    char now[40];
    vks_cred_time((int64_t)time(NULL), 0, now);
    json_object *o = json_object_new_object();
    if (o == NULL || json_object_object_add(o, "name", json_object_new_string(name)) != 0 ||
        json_object_object_add(o, "username", json_object_new_string(username)) != 0 ||
        json_object_object_add(o, "claimed", json_object_new_string(now)) != 0 ||
        (*out = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN))) == NULL) {
        json_object_put(o);
        return vks_err_set(err, VKS_E_NOMEM, "out of memory");
    }
    json_object_put(o);
    return VKS_OK;
}

struct holder {
    int64_t version;    /* the record's current version (the cas of a takeover); 0 = none at all */
    bool readable;      /* name and claimed were read                                             */
    char name[VKS_CRED_NAME_MAX + 1];
    int64_t claimed;    /* 0 when absent or unreadable                                            */
};

/* The index record's current version from its metadata (for a soft-deleted record). */
static vks_status meta_version(struct vks_cred_ctx *ctx, const char *ipath, int64_t *v, struct vks_err *err)
{
    struct vks_vault_reply r = { 0 };
    *v = 0;
    vks_status st = vks_vault_kv2_metadata_read(ctx->vault, ctx->mount, ipath, &r, err);
    json_object *o = st == VKS_OK && r.body ? json_tokener_parse(r.body) : NULL, *d = NULL, *cv = NULL;
    if (st == VKS_E_NOT_FOUND)
        st = VKS_OK;
    else if (st == VKS_OK && o && json_object_object_get_ex(o, "data", &d) &&
             json_object_object_get_ex(d, "current_version", &cv))
        *v = json_object_get_int64(cv);
    else if (st == VKS_OK)
        st = vks_err_set(err, VKS_E_BAD_RESPONSE, "%s/metadata/%s: no current_version", ctx->mount, ipath);
    json_object_put(o);
    vks_vault_reply_free(&r);
    return st;
}

static vks_status read_holder(struct vks_cred_ctx *ctx, const char *ipath, struct holder *h, struct vks_err *err)
{
    static const char *const sib[] = { "claimed" };
    struct vks_kv_request rq = { .mount = ctx->mount, .path = ipath, .key = "name", .kv_version = 2,
                                 .siblings = sib, .n_siblings = 1 };
    struct vks_kv_result res;
    memset(h, 0, sizeof *h);
    vks_status st = vks_vault_kv_read(ctx->vault, &rq, &res, err);
    if (st == VKS_OK) {
        h->version = res.secret_version;
        h->readable = res.value.len > 0 && res.value.len <= VKS_CRED_NAME_MAX;
        if (h->readable)
            memcpy(h->name, res.value.data, res.value.len);
        char c[40] = "";
        if (res.siblings[0].len > 0 && res.siblings[0].len < sizeof c)
            memcpy(c, res.siblings[0].data, res.siblings[0].len);
        if (!vks_cred_parse_time(c, &h->claimed))
            h->claimed = 0;
    } else if (st == VKS_E_NOT_FOUND || st == VKS_E_DELETED || st == VKS_E_DESTROYED || st == VKS_E_MISSING_KEY) {
        st = meta_version(ctx, ipath, &h->version, err); /* a record with no usable name: stale */
    }
    vks_kv_result_free(&res);
    return st;
}

/*
 * Is the holder live? EXISTS when it names a managed credential with this username, or a credential
 * not (yet) managed or not (yet) there whose claim is younger than VKS_CRED_INDEX_GRACE seconds
 * (a create in flight between its index and its metadata writes). VKS_OK: stale, take it over.
 */
static vks_status holder_live(struct vks_cred_ctx *ctx, const struct holder *h, const char *username,
                              struct vks_err *err)
{
    if (!h->readable || vks_cred_check_name(h->name, "NAME", NULL) != VKS_OK)
        return VKS_OK;
    char path[VKS_CRED_PATH_MAX];
    snprintf(path, sizeof path, "%s%s", ctx->prefix, h->name);
    struct vks_cred_record rec;
    vks_status st = vks_cred_int_load(ctx, h->name, path, &rec, err);
    if (st != VKS_OK && st != VKS_E_NOT_FOUND)
        return st;
    bool found = st == VKS_OK, managed = found && rec.managed;
    bool same = managed && strcasecmp(rec.username, username) == 0;
    if (found)
        vks_cred_record_free(&rec);
    if (same)
        return vks_err_set(err, VKS_E_EXISTS, "--username '%s' is already used by credential '%s'", username,
                           h->name);
    if (managed) /* the credential lives on with another username: the record is left over */
        return VKS_OK;
    int64_t age = (int64_t)time(NULL) - h->claimed;
    if (h->claimed != 0 && age < VKS_CRED_INDEX_GRACE)
        return vks_err_set(err, VKS_E_EXISTS, "--username '%s' is being claimed by a create of credential '%s' "
                           "in progress (%lld s ago); retry after %d s if that create died", username, h->name,
                           (long long)(age < 0 ? 0 : age), VKS_CRED_INDEX_GRACE);
    return VKS_OK;
}

vks_status vks_cred_int_index_claim(struct vks_cred_ctx *ctx, const char *name, const char *username,
                                    int64_t *version, struct vks_err *err)
{
    char ipath[VKS_CRED_INDEX_PATH_MAX], *data = NULL;
    *version = 0;
    index_path(ctx, username, ipath, sizeof ipath);
    vks_status st = claim_json(name, username, &data, err);
    if (st == VKS_OK)
        st = vks_vault_kv2_write(ctx->vault, ctx->mount, ipath, data, 0, false, version, err);
    if (st == VKS_E_CONFLICT) { /* a record exists: live (refused) or left over (taken over) */
        struct holder h;
        st = read_holder(ctx, ipath, &h, err);
        if (st == VKS_OK)
            st = holder_live(ctx, &h, username, err);
        if (st == VKS_OK)
            st = vks_vault_kv2_write(ctx->vault, ctx->mount, ipath, data, h.version, false, version, err);
        if (st == VKS_E_CONFLICT) /* another create took it over between our read and our write */
            st = vks_err_set(err, VKS_E_EXISTS, "--username '%s' was claimed by another create at the same time; "
                             "nothing was written", username);
    }
    if (st == VKS_E_PERMISSION_DENIED && err)
        vks_err_set(err, st, "this token may not write the username index %s/data/%s (the shipped policies grant "
                    "it beside the credentials: docs/credentials.md \"Usernames are unique\")", ctx->mount, ipath);
    free(data);
    return st;
}

vks_status vks_cred_int_index_release(struct vks_cred_ctx *ctx, const char *name, const char *username,
                                      int64_t version, struct vks_err *err)
{
    char ipath[VKS_CRED_INDEX_PATH_MAX];
    index_path(ctx, username, ipath, sizeof ipath);
    struct holder h;
    vks_status st = read_holder(ctx, ipath, &h, err);
    if (st != VKS_OK || h.version == 0)
        return st;
    if (!h.readable || strcmp(h.name, name) != 0 || (version > 0 && h.version != version))
        return VKS_OK; /* it is another credential's (or another create's) claim now */
    st = vks_vault_kv2_metadata_delete(ctx->vault, ctx->mount, ipath, err);
    return st == VKS_E_NOT_FOUND ? VKS_OK : st;
}
