/*
 * vks_reset_record: parse, build and match the reset control record (contract:
 * vks_reset_record.h; design: docs/internals/reset.md). Names only, never a secret, so json-c is
 * fine here. Fail closed: anything this parser does not understand is an error naming the field.
 */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vks_reset_record.h"

#define BAD(...) vks_err_set(err, VKS_E_BAD_RESPONSE, "control record: " __VA_ARGS__)

static const char *const scope_names[] = { "name", "tenant", "all" };

void vks_reset_entry_free(struct vks_reset_entry *e)
{
    if (e == NULL)
        return;
    for (size_t i = 0; i < e->npaths; i++)
        free(e->paths[i]);
    free(e->paths);
    e->paths = NULL;
    e->npaths = 0;
}

void vks_reset_record_free(struct vks_reset_record *rec)
{
    if (rec == NULL)
        return;
    for (size_t i = 0; i < rec->n; i++)
        vks_reset_entry_free(&rec->entries[i]);
    free(rec->entries);
    memset(rec, 0, sizeof *rec);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool printable(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
            return false;
    return true;
}

/* An optional short string field: absent is "", present must be a printable string < cap. */
static vks_status opt_str(json_object *o, const char *k, char *out, size_t cap, size_t i, struct vks_err *err)
{
    json_object *v;
    out[0] = '\0';
    if (!json_object_object_get_ex(o, k, &v))
        return VKS_OK;
    size_t n = json_object_is_type(v, json_type_string) ? (size_t)json_object_get_string_len(v) : 0;
    if (!json_object_is_type(v, json_type_string) || n >= cap || !printable(json_object_get_string(v), n))
        return BAD("entries[%zu].%s: expected a printable string of at most %zu characters", i, k, cap - 1);
    memcpy(out, json_object_get_string(v), n + 1);
    return VKS_OK;
}

static vks_status get_seq(json_object *o, const char *k, const char *where, int64_t *out, struct vks_err *err)
{
    json_object *v;
    if (!json_object_object_get_ex(o, k, &v) || !json_object_is_type(v, json_type_int))
        return BAD("%s%s: expected an integer", where, k);
    *out = json_object_get_int64(v);
    if (*out < 0 || *out > ((int64_t)1 << 53))
        return BAD("%s%s: %lld is out of range", where, k, (long long)*out);
    return VKS_OK;
}

static vks_status parse_paths(json_object *a, size_t i, size_t *total, struct vks_reset_entry *e,
                              struct vks_err *err)
{
    if (a == NULL || !json_object_is_type(a, json_type_array) || json_object_array_length(a) == 0)
        return BAD("entries[%zu].paths: expected a non-empty array of paths", i);
    size_t n = json_object_array_length(a);
    if (n > VKS_RESET_MAX_PATHS || *total + n > VKS_RESET_MAX_PATHS)
        return BAD("entries[%zu].paths: more than %d paths in the record", i, VKS_RESET_MAX_PATHS);
    *total += n;
    if ((e->paths = calloc(n, sizeof *e->paths)) == NULL)
        return vks_err_set(err, VKS_E_NOMEM, "control record: out of memory");
    for (size_t j = 0; j < n; j++) {
        json_object *p = json_object_array_get_idx(a, j);
        size_t l = json_object_is_type(p, json_type_string) ? (size_t)json_object_get_string_len(p) : 0;
        if (l == 0 || l > VKS_RESET_PATH_MAX || !printable(json_object_get_string(p), l))
            return BAD("entries[%zu].paths[%zu]: expected a path of 1-%d printable characters", i, j,
                       VKS_RESET_PATH_MAX);
        if ((e->paths[j] = strdup(json_object_get_string(p))) == NULL)
            return vks_err_set(err, VKS_E_NOMEM, "control record: out of memory");
        e->npaths = j + 1;
    }
    qsort(e->paths, e->npaths, sizeof *e->paths, cmp_str);
    return VKS_OK;
}

static vks_status parse_entry(json_object *o, size_t i, size_t *total, struct vks_reset_entry *e,
                              struct vks_err *err)
{
    char where[32], scope[16];
    snprintf(where, sizeof where, "entries[%zu].", i);
    if (!json_object_is_type(o, json_type_object))
        return BAD("entries[%zu]: expected an object", i);
    vks_status st = get_seq(o, "seq", where, &e->seq, err);
    if (st == VKS_OK)
        st = opt_str(o, "id", e->id, sizeof e->id, i, err);
    if (st == VKS_OK)
        st = opt_str(o, "at", e->at, sizeof e->at, i, err);
    if (st == VKS_OK)
        st = opt_str(o, "tenant", e->tenant, sizeof e->tenant, i, err);
    if (st == VKS_OK)
        st = opt_str(o, "scope", scope, sizeof scope, i, err);
    if (st == VKS_OK)
        st = opt_str(o, "prefix", e->prefix, sizeof e->prefix, i, err);
    if (st != VKS_OK)
        return st;
    size_t k = 0;
    while (k < 3 && strcmp(scope, scope_names[k]) != 0)
        k++;
    if (k == 3)
        return BAD("entries[%zu].scope: '%s' is not name, tenant or all", i, scope);
    e->scope = (enum vks_reset_scope)k;
    if (e->scope == VKS_RESET_ALL)
        return e->prefix[0] ? VKS_OK : BAD("entries[%zu].prefix: required for scope all", i);
    json_object *a = NULL;
    json_object_object_get_ex(o, "paths", &a);
    return parse_paths(a, i, total, e, err);
}

static vks_status parse_data(json_object *d, struct vks_reset_record *out, struct vks_err *err)
{
    json_object *v;
    if (!json_object_is_type(d, json_type_object))
        return BAD("data: expected an object");
    if (!json_object_object_get_ex(d, "schema", &v) || !json_object_is_type(v, json_type_string) ||
        strcmp(json_object_get_string(v), "1") != 0)
        return BAD("schema: expected \"1\" (a record written by a newer vks is refused, not guessed at)");
    vks_status st = get_seq(d, "seq", "", &out->seq, err);
    if (st == VKS_OK)
        st = get_seq(d, "first_seq", "", &out->first_seq, err);
    if (st == VKS_OK && out->first_seq > out->seq)
        st = BAD("first_seq: %lld is after seq %lld", (long long)out->first_seq, (long long)out->seq);
    if (st != VKS_OK)
        return st;
    if (!json_object_object_get_ex(d, "entries", &v) || !json_object_is_type(v, json_type_array))
        return BAD("entries: expected an array");
    size_t n = json_object_array_length(v), total = 0;
    if (n > 2 * VKS_RESET_KEEP_ENTRIES)
        return BAD("entries: %zu entries, at most %d", n, 2 * VKS_RESET_KEEP_ENTRIES);
    if (n > 0 && (out->entries = calloc(n, sizeof *out->entries)) == NULL)
        return vks_err_set(err, VKS_E_NOMEM, "control record: out of memory");
    for (size_t i = 0; i < n; i++) {
        out->n = i + 1;
        if ((st = parse_entry(json_object_array_get_idx(v, i), i, &total, &out->entries[i], err)) != VKS_OK)
            return st;
        int64_t s = out->entries[i].seq, lo = i ? out->entries[i - 1].seq + 1 : out->first_seq;
        if (s < lo || s > out->seq)
            return BAD("entries[%zu].seq: %lld is out of order (expected %lld..%lld)", i, (long long)s,
                       (long long)lo, (long long)out->seq);
    }
    return VKS_OK;
}

vks_status vks_reset_record_parse(const char *body, size_t len, struct vks_reset_record *out, struct vks_err *err)
{
    memset(out, 0, sizeof *out);
    json_tokener *tok = json_tokener_new_ex(16);
    if (tok == NULL)
        return vks_err_set(err, VKS_E_NOMEM, "control record: out of memory");
    json_object *root = body && len > 0 && len < (size_t)1 << 30 ? json_tokener_parse_ex(tok, body, (int)len) : NULL;
    bool whole = root && json_tokener_get_error(tok) == json_tokener_success &&
                 (size_t)json_tokener_get_parse_end(tok) == len;
    json_tokener_free(tok);
    json_object *d1 = NULL, *d2 = NULL;
    vks_status st;
    if (!whole)
        st = BAD("not a JSON document (truncated or malformed)");
    else if (!json_object_object_get_ex(root, "data", &d1) || !json_object_object_get_ex(d1, "data", &d2))
        st = BAD("data.data: missing");
    else
        st = parse_data(d2, out, err);
    json_object_put(root);
    if (st != VKS_OK)
        vks_reset_record_free(out);
    return st;
}

vks_status vks_reset_record_json(const struct vks_reset_record *rec, char **out, struct vks_err *err)
{
    *out = NULL;
    json_object *d = json_object_new_object(), *a = json_object_new_array();
    bool ok = d && a;
    if (ok) {
        json_object_object_add(d, "schema", json_object_new_string("1"));
        json_object_object_add(d, "seq", json_object_new_int64(rec->seq));
        json_object_object_add(d, "first_seq", json_object_new_int64(rec->first_seq));
    }
    for (size_t i = 0; ok && i < rec->n; i++) {
        const struct vks_reset_entry *e = &rec->entries[i];
        json_object *o = json_object_new_object(), *ps = NULL;
        ok = o != NULL;
        if (!ok)
            break;
        json_object_object_add(o, "seq", json_object_new_int64(e->seq));
        json_object_object_add(o, "id", json_object_new_string(e->id));
        json_object_object_add(o, "at", json_object_new_string(e->at));
        json_object_object_add(o, "scope", json_object_new_string(scope_names[e->scope]));
        if (e->tenant[0])
            json_object_object_add(o, "tenant", json_object_new_string(e->tenant));
        if (e->prefix[0])
            json_object_object_add(o, "prefix", json_object_new_string(e->prefix));
        if (e->scope != VKS_RESET_ALL && (ps = json_object_new_array()) != NULL) {
            for (size_t j = 0; j < e->npaths; j++)
                json_object_array_add(ps, json_object_new_string(e->paths[j]));
            json_object_object_add(o, "paths", ps);
        }
        json_object_array_add(a, o);
    }
    if (ok) {
        json_object_object_add(d, "entries", a);
        a = NULL;
        const char *s = json_object_to_json_string_ext(d, JSON_C_TO_STRING_PLAIN);
        ok = s && (*out = strdup(s)) != NULL;
    }
    json_object_put(a);
    json_object_put(d);
    return ok ? VKS_OK : vks_err_set(err, VKS_E_NOMEM, "control record: out of memory");
}

vks_status vks_reset_record_append(struct vks_reset_record *rec, struct vks_reset_entry *e, struct vks_err *err)
{
    struct vks_reset_entry *n = realloc(rec->entries, (rec->n + 1) * sizeof *n);
    if (n == NULL)
        return vks_err_set(err, VKS_E_NOMEM, "control record: out of memory");
    rec->entries = n;
    e->seq = ++rec->seq;
    if (e->paths)
        qsort(e->paths, e->npaths, sizeof *e->paths, cmp_str);
    rec->entries[rec->n++] = *e;
    e->paths = NULL;
    e->npaths = 0;
    size_t total = 0, keep = 0; /* newest first, while both limits hold (the new one always stays) */
    while (keep < rec->n && keep < VKS_RESET_KEEP_ENTRIES &&
           (keep == 0 || total + rec->entries[rec->n - 1 - keep].npaths <= VKS_RESET_MAX_PATHS))
        total += rec->entries[rec->n - 1 - keep++].npaths;
    size_t drop = rec->n - keep;
    for (size_t i = 0; i < drop; i++)
        vks_reset_entry_free(&rec->entries[i]);
    memmove(rec->entries, rec->entries + drop, keep * sizeof *rec->entries);
    rec->n = keep;
    rec->first_seq = rec->entries[0].seq;
    return VKS_OK;
}

bool vks_reset_entry_matches(const struct vks_reset_entry *e, const char *path, size_t len)
{
    if (e->scope == VKS_RESET_ALL) {
        size_t pl = strlen(e->prefix);
        return len >= pl && memcmp(path, e->prefix, pl) == 0;
    }
    size_t lo = 0, hi = e->npaths;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strncmp(e->paths[mid], path, len);
        if (c == 0 && e->paths[mid][len] != '\0')
            c = 1;
        if (c == 0)
            return true;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}
