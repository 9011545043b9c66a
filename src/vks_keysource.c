/*
 * vks_keysource: keysource forms, precedence and validation (see vks_keysource.h and
 * docs/internals/keysource.md). No Lua here: the binding hands us fields.
 */
#include "vks_keysource.h"
#include "vks_redact.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


const char *vks_keysource_kind_name(enum vks_ks_kind kind)
{
    switch (kind) {
    case VKS_KS_FILE: return "file";
    case VKS_KS_DATA: return "key_data";
    case VKS_KS_VAULT: return "vault";
    case VKS_KS_EVENT: return "event";
    case VKS_KS_NONE: break;
    }
    return "none";
}

void vks_keysource_clear(struct vks_keysource *ks)
{
    if (ks == NULL)
        return;
    free(ks->file_path);
    vks_secret_free(&ks->key_data);
    free(ks->mount);
    free(ks->path);
    free(ks->key);
    free(ks->address);
    vks_secret_free(&ks->token);
    free(ks->namespace_);
    free(ks->event_name);
    memset(ks, 0, sizeof *ks);
    ks->kv_version = VKS_KV_UNSET;
}

static void ks_init(struct vks_keysource *ks)
{
    memset(ks, 0, sizeof *ks);
    ks->kv_version = VKS_KV_UNSET;
}

/* The fields this module knows, found in one pass (this runs on every lookup). */
enum kf {
    K_KEY_DATA, K_MOUNT, K_PATH, K_KEY, K_ADDRESS, K_TOKEN, K_NAMESPACE, K_KV, K_VERSION, K_EVNAME,
    K_EVARGS, K_COUNT, K_UNKNOWN_VAULT, K_OTHER
};

static int classify(const char *name)
{
    if (name[0] == 'v' && strncmp(name, "vault_", 6) == 0) {
        const char *r = name + 6;
        switch (r[0]) {
        case 'm': return strcmp(r, "mount") == 0 ? K_MOUNT : K_UNKNOWN_VAULT;
        case 'p': return strcmp(r, "path") == 0 ? K_PATH : K_UNKNOWN_VAULT;
        case 'k': return strcmp(r, "key") == 0 ? K_KEY : strcmp(r, "kv_version") == 0 ? K_KV : K_UNKNOWN_VAULT;
        case 'a': return strcmp(r, "address") == 0 ? K_ADDRESS : K_UNKNOWN_VAULT;
        case 't': return strcmp(r, "token") == 0 ? K_TOKEN : K_UNKNOWN_VAULT;
        case 'n': return strcmp(r, "namespace") == 0 ? K_NAMESPACE : K_UNKNOWN_VAULT;
        case 'v': return strcmp(r, "version") == 0 ? K_VERSION : K_UNKNOWN_VAULT;
        default: return K_UNKNOWN_VAULT;
        }
    }
    if (name[0] == 'k' && strcmp(name, "key_data") == 0)
        return K_KEY_DATA;
    if (name[0] == 'e' && strcmp(name, "event_name") == 0)
        return K_EVNAME;
    if (name[0] == 'e' && strcmp(name, "event_args") == 0)
        return K_EVARGS;
    return K_OTHER;
}

const char *vks_field_type_name(const struct vks_field *f)
{
    switch (f->type) {
    case VKS_FT_STRING: return "string";
    case VKS_FT_INTEGER:
    case VKS_FT_NUMBER: return "number";
    case VKS_FT_BOOLEAN: return "boolean";
    case VKS_FT_TABLE: return "table";
    case VKS_FT_OTHER: break;
    }
    return f->type_name != NULL ? f->type_name : "value";
}

bool vks_has_control(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            return true;
    }
    return false;
}

static char *dup_n(const char *s, size_t len)
{
    char *p = malloc(len + 1);
    if (p != NULL) {
        memcpy(p, s, len);
        p[len] = '\0';
    }
    return p;
}

/* A string field that names something (mount, path, key...): printable, bounded, non-empty. */
static vks_status want_name(const struct vks_field *f, size_t max, bool allow_empty,
                            struct vks_err *err)
{
    if (f->type != VKS_FT_STRING)
        return vks_err_set(err, VKS_E_BAD_KEYSOURCE, "keysource field %s must be a string, not a %s",
                           f->name, vks_field_type_name(f));
    if (f->len == 0 && !allow_empty)
        return vks_err_set(err, VKS_E_BAD_KEYSOURCE, "keysource field %s must not be empty", f->name);
    if (f->len > max)
        return vks_err_set(err, VKS_E_BAD_KEYSOURCE, "keysource field %s is longer than %zu bytes",
                           f->name, max);
    if (memchr(f->str, '\0', f->len) != NULL || vks_has_control(f->str, f->len))
        return vks_err_set(err, VKS_E_BAD_KEYSOURCE,
                           "keysource field %s contains a NUL or control character", f->name);
    return VKS_OK;
}

/*
 * A Vault mount or path: the segments must not be "." or "..", so that a keysource can never
 * step out of its mount (e.g. into sys/), and '?', '#' and '%' are refused so that the value
 * cannot change the meaning of the request URL.
 */
static vks_status want_vault_path(const struct vks_field *f, struct vks_err *err)
{
    vks_status st = want_name(f, VKS_NAME_MAX, false, err);
    if (st != VKS_OK)
        return st;
    for (size_t i = 0; i < f->len; i++) {
        char c = f->str[i];
        if (c == '?' || c == '#' || c == '%')
            return vks_err_set(err, VKS_E_BAD_KEYSOURCE,
                               "keysource field %s must not contain '%c'", f->name, c);
    }
    size_t start = 0;
    for (size_t i = 0; i <= f->len; i++) {
        if (i == f->len || f->str[i] == '/') {
            size_t seg = i - start;
            if ((seg == 1 && f->str[start] == '.') ||
                (seg == 2 && f->str[start] == '.' && f->str[start + 1] == '.'))
                return vks_err_set(err, VKS_E_BAD_KEYSOURCE,
                                   "keysource field %s must not contain a '.' or '..' segment", f->name);
            start = i + 1;
        }
    }
    return VKS_OK;
}

static vks_status parse_uint_field(const struct vks_field *f, long long max, long long *out,
                                   struct vks_err *err, vks_status code, const char *what)
{
    if (f->type == VKS_FT_INTEGER) {
        if (f->ival < 0 || f->ival > max)
            return vks_err_set(err, code, "%s %s must be between 0 and %lld", what, f->name, max);
        *out = f->ival;
        return VKS_OK;
    }
    if (f->type == VKS_FT_STRING) {
        if (f->len == 0 || f->len > 19)
            goto bad;
        long long v = 0;
        for (size_t i = 0; i < f->len; i++) {
            if (f->str[i] < '0' || f->str[i] > '9')
                goto bad;
            v = v * 10 + (f->str[i] - '0');
        }
        if (v > max)
            return vks_err_set(err, code, "%s %s must be between 0 and %lld", what, f->name, max);
        *out = v;
        return VKS_OK;
    }
bad:
    return vks_err_set(err, code, "%s %s must be a whole number, not a %s%s", what, f->name,
                       f->type == VKS_FT_STRING ? "non-numeric " : "", vks_field_type_name(f));
}

vks_status vks_kv_version_parse(const struct vks_field *f, int *out, struct vks_err *err)
{
    if (f->type == VKS_FT_INTEGER && (f->ival == 1 || f->ival == 2)) {
        *out = (int)f->ival;
        return VKS_OK;
    }
    if (f->type == VKS_FT_STRING) {
        if (f->len == 1 && (f->str[0] == '1' || f->str[0] == '2')) {
            *out = f->str[0] - '0';
            return VKS_OK;
        }
        if (f->len == 4 && memcmp(f->str, "auto", 4) == 0) {
            *out = VKS_KV_AUTO;
            return VKS_OK;
        }
    }
    return vks_err_set(err, VKS_E_BAD_KEYSOURCE, "%s must be 1, 2 or \"auto\"", f->name);
}

/* ------------------------------------------------------------------ addresses */

static bool is_host_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_';
}

vks_status vks_address_validate(const char *addr, size_t len, const char *what, struct vks_err *err)
{
    if (addr == NULL || len == 0)
        return vks_err_set(err, VKS_E_BAD_KEYSOURCE, "%s is empty", what);
    if (len > VKS_ADDRESS_MAX)
        return vks_err_set(err, VKS_E_BAD_KEYSOURCE, "%s is longer than %d bytes", what, VKS_ADDRESS_MAX);
    if (memchr(addr, '\0', len) != NULL || vks_has_control(addr, len) || memchr(addr, ' ', len) != NULL)
        return vks_err_set(err, VKS_E_BAD_KEYSOURCE, "%s contains a space, NUL or control character",
                           what);
    char shown[256]; /* for messages: never the user information or a query (vks_redact) */
    vks_redact_url(addr, len, shown, sizeof shown);
    const char *s = addr, *end = addr + len;
    if (len >= 8 && strncasecmp(s, "https://", 8) == 0)
        s += 8;
    else if (len >= 7 && strncasecmp(s, "http://", 7) == 0)
        s += 7;
    else
        return vks_err_set(err, VKS_E_BAD_KEYSOURCE, "%s \"%s\" must start with http:// or https://",
                           what, shown);
    const char *auth_end = s;
    while (auth_end < end && *auth_end != '/' && *auth_end != '?' && *auth_end != '#')
        auth_end++;
    if (memchr(s, '@', (size_t)(auth_end - s)) != NULL)
        return vks_err_set(err, VKS_E_BAD_KEYSOURCE,
                           "%s \"%s\" must not contain user information (credentials in a URL are refused)",
                           what, shown);
    const char *h = s, *port = NULL;
    if (h < auth_end && *h == '[') {
        const char *close = memchr(h, ']', (size_t)(auth_end - h));
        if (close == NULL || close == h + 1)
            goto badhost;
        for (const char *p = h + 1; p < close; p++)
            if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F') ||
                  *p == ':' || *p == '.'))
                goto badhost;
        if (close + 1 < auth_end) {
            if (close[1] != ':')
                goto badhost;
            port = close + 2;
        }
    } else {
        const char *p = h;
        while (p < auth_end && *p != ':') {
            if (!is_host_char(*p))
                goto badhost;
            p++;
        }
        if (p == h)
            goto badhost;
        if (p < auth_end)
            port = p + 1;
    }
    if (port != NULL) {
        long v = 0;
        if (port == auth_end || auth_end - port > 5)
            goto badport;
        for (const char *p = port; p < auth_end; p++) {
            if (*p < '0' || *p > '9')
                goto badport;
            v = v * 10 + (*p - '0');
        }
        if (v < 1 || v > 65535)
            goto badport;
    }
    if (memchr(auth_end, '?', (size_t)(end - auth_end)) != NULL ||
        memchr(auth_end, '#', (size_t)(end - auth_end)) != NULL)
        return vks_err_set(err, VKS_E_BAD_KEYSOURCE, "%s \"%s\" must not contain a query or fragment",
                           what, shown);
    return VKS_OK;
badhost:
    return vks_err_set(err, VKS_E_BAD_KEYSOURCE, "%s \"%s\" has no valid host", what, shown);
badport:
    return vks_err_set(err, VKS_E_BAD_KEYSOURCE, "%s \"%s\" has an invalid port (1-65535)", what, shown);
}

bool vks_address_is_loopback(const char *addr)
{
    const char *s = strstr(addr, "://");
    if (s == NULL)
        return false;
    s += 3;
    size_t hl = strcspn(s, ":/");
    if (s[0] == '[')
        return strncmp(s, "[::1]", 5) == 0;
    if (hl == 9 && strncasecmp(s, "localhost", 9) == 0)
        return true;
    if (hl >= 7 && strncmp(s, "127.", 4) == 0) {
        for (size_t i = 4; i < hl; i++)
            if (!(s[i] == '.' || (s[i] >= '0' && s[i] <= '9')))
                return false;
        return true;
    }
    return false;
}

/* ------------------------------------------------------------------ forms */

vks_status vks_keysource_from_path(const char *path, size_t len, struct vks_keysource *out,
                                   struct vks_err *err)
{
    ks_init(out);
    struct vks_field f = { .name = "file path", .type = VKS_FT_STRING, .str = path, .len = len };
    if (path == NULL)
        return vks_err_set(err, VKS_E_BAD_KEYSOURCE, "keysource file path is missing");
    vks_status st = want_name(&f, VKS_PATH_MAX, false, err);
    if (st != VKS_OK)
        return st;
    out->file_path = dup_n(path, len);
    if (out->file_path == NULL)
        return vks_err_set(err, VKS_E_NOMEM, "out of memory for keysource file path");
    out->kind = VKS_KS_FILE;
    return VKS_OK;
}

static vks_status set_name(char **dst, const struct vks_field *f, struct vks_err *err)
{
    *dst = dup_n(f->str, f->len);
    if (*dst == NULL)
        return vks_err_set(err, VKS_E_NOMEM, "out of memory for keysource field %s", f->name);
    return VKS_OK;
}

static vks_status fill_vault(const struct vks_field *const *kf, struct vks_keysource *ks, struct vks_err *err)
{
    const struct vks_field *f;
    vks_status st;

    f = kf[K_MOUNT];
    if ((st = want_vault_path(f, err)) != VKS_OK)
        return st;
    size_t mlen = f->len;
    while (mlen > 1 && f->str[mlen - 1] == '/') /* "secret/" is how the vault CLI names a mount */
        mlen--;
    struct vks_field m = *f;
    m.len = mlen;
    if (m.str[0] == '/')
        return vks_err_set(err, VKS_E_BAD_KEYSOURCE, "keysource field vault_mount must not start with '/'");
    if ((st = set_name(&ks->mount, &m, err)) != VKS_OK)
        return st;

    f = kf[K_PATH];
    if ((st = want_vault_path(f, err)) != VKS_OK || (st = set_name(&ks->path, f, err)) != VKS_OK)
        return st;

    f = kf[K_KEY];
    if (f != NULL) {
        if ((st = want_name(f, VKS_NAME_MAX, false, err)) != VKS_OK || (st = set_name(&ks->key, f, err)) != VKS_OK)
            return st;
    } else {
        ks->key = strdup("key");
        if (ks->key == NULL)
            return vks_err_set(err, VKS_E_NOMEM, "out of memory for keysource field vault_key");
    }

    f = kf[K_ADDRESS];
    if (f != NULL) {
        if (f->type != VKS_FT_STRING)
            return vks_err_set(err, VKS_E_BAD_KEYSOURCE,
                               "keysource field vault_address must be a string, not a %s", vks_field_type_name(f));
        if ((st = vks_address_validate(f->str, f->len, "keysource field vault_address", err)) != VKS_OK)
            return st;
        if ((st = set_name(&ks->address, f, err)) != VKS_OK)
            return st;
        while (strlen(ks->address) > 8 && ks->address[strlen(ks->address) - 1] == '/')
            ks->address[strlen(ks->address) - 1] = '\0';
    }

    f = kf[K_TOKEN];
    if (f != NULL) {
        if (f->type != VKS_FT_STRING)
            return vks_err_set(err, VKS_E_BAD_KEYSOURCE,
                               "keysource field vault_token must be a string, not a %s", vks_field_type_name(f));
        if (f->len == 0 || f->len > VKS_SECRET_MAX || memchr(f->str, '\0', f->len) != NULL ||
            vks_has_control(f->str, f->len))
            return vks_err_set(err, VKS_E_BAD_KEYSOURCE,
                               "keysource field vault_token must be 1 to %d printable bytes",
                               VKS_SECRET_MAX);
        if ((st = vks_secret_dup(f->str, f->len, &ks->token, err)) != VKS_OK)
            return vks_err_set(err, st == VKS_E_INVALID_ARG ? VKS_E_BAD_KEYSOURCE : st,
                               "keysource field vault_token could not be stored in locked memory");
        ks->has_token = true;
    }

    f = kf[K_NAMESPACE];
    if (f != NULL) {
        if ((st = want_name(f, VKS_NAME_MAX, true, err)) != VKS_OK)
            return st;
        if (f->len > 0 && (st = want_vault_path(f, err)) != VKS_OK)
            return st;
        if ((st = set_name(&ks->namespace_, f, err)) != VKS_OK)
            return st;
    }

    f = kf[K_KV];
    if (f != NULL) {
        if ((st = vks_kv_version_parse(f, &ks->kv_version, err)) != VKS_OK)
            return vks_err_set(err, VKS_E_BAD_KEYSOURCE, "keysource field vault_kv_version must be 1, 2 or \"auto\"");
    }

    f = kf[K_VERSION];
    if (f != NULL) {
        long long v = 0;
        if ((st = parse_uint_field(f, INT64_MAX / 2, &v, err, VKS_E_BAD_KEYSOURCE, "keysource field")) != VKS_OK)
            return st;
        if (v > 0 && ks->kv_version == 1)
            return vks_err_set(err, VKS_E_BAD_KEYSOURCE,
                               "keysource field vault_version needs KV version 2, but vault_kv_version is 1");
        ks->version = (int64_t)v;
    }
    ks->kind = VKS_KS_VAULT;
    return VKS_OK;
}

vks_status vks_keysource_from_fields(const struct vks_field *fields, size_t n,
                                     struct vks_keysource *out, struct vks_err *err)
{
    vks_status st = VKS_OK;
    ks_init(out);

    const struct vks_field *kf[K_COUNT] = { NULL };
    for (size_t i = 0; i < n; i++) {
        const char *name = fields[i].name;
        if (name == NULL)
            continue;
        int c = classify(name);
        if (c < K_COUNT) {
            if (kf[c] == NULL)
                kf[c] = &fields[i];
            continue;
        }
        if (c == K_UNKNOWN_VAULT) {
            /* A misspelt vault_* key would otherwise silently fall back to a default: refuse it. */
            if (vks_has_control(name, strlen(name)) || strlen(name) > 64)
                return vks_err_set(err, VKS_E_BAD_KEYSOURCE, "keysource has an unknown vault_ field");
            return vks_err_set(err, VKS_E_BAD_KEYSOURCE,
                               "keysource has an unknown field %s (known vault_ fields: vault_mount, "
                               "vault_path, vault_key, vault_address, vault_token, vault_namespace, "
                               "vault_kv_version, vault_version)", name);
        }
    }

    const struct vks_field *kd = kf[K_KEY_DATA];
    if (kd != NULL) {
        /* Data comes first in KumoMTA's untagged enum: it wins over vault_* and event_*. */
        if (kd->type != VKS_FT_STRING)
            return vks_err_set(err, VKS_E_BAD_KEYSOURCE, "keysource field key_data must be a string, not a %s",
                               vks_field_type_name(kd));
        if (kd->len > VKS_SECRET_MAX)
            return vks_err_set(err, VKS_E_BAD_KEYSOURCE, "keysource field key_data is longer than %d bytes",
                               VKS_SECRET_MAX);
        st = vks_secret_dup(kd->str, kd->len, &out->key_data, err);
        if (st != VKS_OK) {
            vks_keysource_clear(out);
            return vks_err_set(err, st, "keysource field key_data could not be stored in locked memory");
        }
        out->kind = VKS_KS_DATA;
        return VKS_OK;
    }

    const struct vks_field *vm = kf[K_MOUNT], *vp = kf[K_PATH];
    if (vm != NULL && vp != NULL) {
        st = fill_vault(kf, out, err);
        if (st != VKS_OK)
            vks_keysource_clear(out);
        return st;
    }

    const struct vks_field *en = kf[K_EVNAME], *ea = kf[K_EVARGS];
    if (en != NULL && ea != NULL) {
        if ((st = want_name(en, VKS_NAME_MAX, false, err)) != VKS_OK)
            return st;
        if (ea->type != VKS_FT_TABLE)
            return vks_err_set(err, VKS_E_BAD_KEYSOURCE,
                               "keysource field event_args must be a table (a list of arguments), not a %s",
                               vks_field_type_name(ea));
        out->event_name = dup_n(en->str, en->len);
        if (out->event_name == NULL)
            return vks_err_set(err, VKS_E_NOMEM, "out of memory for keysource field event_name");
        out->event_nargs = ea->ival > 0 ? (size_t)ea->ival : 0;
        out->kind = VKS_KS_EVENT;
        return VKS_OK;
    }

    /* Nothing matched: say what is missing for the form the table seems to aim at. */
    if (vm != NULL)
        return vks_err_set(err, VKS_E_BAD_KEYSOURCE, "keysource has vault_mount but no vault_path");
    if (vp != NULL)
        return vks_err_set(err, VKS_E_BAD_KEYSOURCE, "keysource has vault_path but no vault_mount");
    if (en != NULL)
        return vks_err_set(err, VKS_E_BAD_KEYSOURCE, "keysource has event_name but no event_args");
    if (ea != NULL)
        return vks_err_set(err, VKS_E_BAD_KEYSOURCE, "keysource has event_args but no event_name");
    for (size_t i = 0; i < n; i++)
        if (fields[i].name != NULL && strncmp(fields[i].name, "vault_", 6) == 0)
            return vks_err_set(err, VKS_E_BAD_KEYSOURCE,
                               "keysource has %s but no vault_mount and vault_path", fields[i].name);
    return vks_err_set(err, VKS_E_BAD_KEYSOURCE,
                       "keysource matches no form: expected a file path string, {key_data=...}, "
                       "{vault_mount=..., vault_path=...} or {event_name=..., event_args={...}}");
}

static vks_status copy_str(char **dst, const char *src, struct vks_err *err)
{
    if (src == NULL) {
        *dst = NULL;
        return VKS_OK;
    }
    *dst = strdup(src);
    return *dst != NULL ? VKS_OK : vks_err_set(err, VKS_E_NOMEM, "out of memory copying a keysource");
}

vks_status vks_keysource_copy(const struct vks_keysource *src, struct vks_keysource *out,
                              struct vks_err *err)
{
    ks_init(out);
    out->kind = src->kind;
    out->has_token = src->has_token;
    out->kv_version = src->kv_version;
    out->version = src->version;
    out->event_nargs = src->event_nargs;
    vks_status st;
    if ((st = copy_str(&out->file_path, src->file_path, err)) != VKS_OK ||
        (st = copy_str(&out->mount, src->mount, err)) != VKS_OK ||
        (st = copy_str(&out->path, src->path, err)) != VKS_OK ||
        (st = copy_str(&out->key, src->key, err)) != VKS_OK ||
        (st = copy_str(&out->address, src->address, err)) != VKS_OK ||
        (st = copy_str(&out->namespace_, src->namespace_, err)) != VKS_OK ||
        (st = copy_str(&out->event_name, src->event_name, err)) != VKS_OK)
        goto fail;
    if (src->key_data.data != NULL &&
        (st = vks_secret_dup(src->key_data.data, src->key_data.len, &out->key_data, err)) != VKS_OK)
        goto fail;
    if (src->token.data != NULL &&
        (st = vks_secret_dup(src->token.data, src->token.len, &out->token, err)) != VKS_OK)
        goto fail;
    return VKS_OK;
fail:
    vks_keysource_clear(out);
    return st;
}

char *vks_keysource_describe(const struct vks_keysource *ks, const char *default_address,
                             char *buf, size_t n)
{
    if (buf == NULL || n == 0)
        return buf;
    int w = 0;
    switch (ks != NULL ? ks->kind : VKS_KS_NONE) {
    case VKS_KS_FILE:
        w = snprintf(buf, n, "file \"%s\"", ks->file_path);
        break;
    case VKS_KS_DATA:
        w = snprintf(buf, n, "key_data");
        break;
    case VKS_KS_EVENT:
        w = snprintf(buf, n, "event \"%s\"", ks->event_name);
        break;
    case VKS_KS_VAULT: {
        const char *a = ks->address != NULL ? ks->address : default_address;
        char addr[256];
        if (a != NULL)
            vks_redact_url(a, strlen(a), addr, sizeof addr);
        char ver[40] = "";
        if (ks->version > 0)
            snprintf(ver, sizeof ver, " version %lld", (long long)ks->version);
        w = snprintf(buf, n, "vault mount \"%s\" path \"%s\" key \"%s\"%s%s%s%s%s%s", ks->mount,
                     ks->path, ks->key, ks->namespace_ != NULL ? " namespace \"" : "",
                     ks->namespace_ != NULL ? ks->namespace_ : "", ks->namespace_ != NULL ? "\"" : "",
                     ver, a != NULL ? " at " : "", a != NULL ? addr : "");
        break;
    }
    case VKS_KS_NONE:
        w = snprintf(buf, n, "empty keysource");
        break;
    }
    if (w < 0)
        buf[0] = '\0';
    else if ((size_t)w >= n && n > 4)
        memcpy(buf + n - 4, "...", 4);
    return buf;
}
