/* vault-dev: ACL policies. Parses the HCL subset policies use (and the JSON form) and answers
 * capability checks with Vault's rules: exact paths, a trailing '*' glob, '+' for one segment,
 * the most specific matching rule wins, 'deny' wins inside a rule, 'root' allows everything. */
#include "vd.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char vd_default_policy[] =
    "# Allow tokens to look up their own properties\n"
    "path \"auth/token/lookup-self\" {\n    capabilities = [\"read\"]\n}\n\n"
    "# Allow tokens to renew themselves\n"
    "path \"auth/token/renew-self\" {\n    capabilities = [\"update\"]\n}\n\n"
    "# Allow tokens to revoke themselves\n"
    "path \"auth/token/revoke-self\" {\n    capabilities = [\"update\"]\n}\n\n"
    "# Allow a token to look up its own capabilities on a path\n"
    "path \"sys/capabilities-self\" {\n    capabilities = [\"update\"]\n}\n\n"
    "# Allow a token to look up its resultant ACL from all policies\n"
    "path \"sys/internal/ui/resultant-acl\" {\n    capabilities = [\"read\"]\n}\n";

/* ------------------------------------------------------------------ a tiny HCL reader */

struct lex {
    const char *p;
    char *err;
    size_t errlen;
};

static void skip_ws(struct lex *l)
{
    for (;;) {
        while (isspace((unsigned char)*l->p))
            l->p++;
        if (*l->p == '#' || (l->p[0] == '/' && l->p[1] == '/')) {
            while (*l->p && *l->p != '\n')
                l->p++;
        } else if (l->p[0] == '/' && l->p[1] == '*') {
            const char *e = strstr(l->p + 2, "*/");
            l->p = e ? e + 2 : l->p + strlen(l->p);
        } else
            return;
    }
}

static struct json_object *hcl_value(struct lex *l);

static char *hcl_string(struct lex *l)
{
    if (*l->p != '"')
        return NULL;
    l->p++;
    struct vd_buf b = {0};
    vd_buf_add(&b, "", 0);
    while (*l->p && *l->p != '"') {
        if (*l->p == '\\' && l->p[1]) {
            l->p++;
            char c = *l->p == 'n' ? '\n' : *l->p == 't' ? '\t' : *l->p;
            vd_buf_add(&b, &c, 1);
        } else if (*l->p == '\n') {
            vd_buf_free(&b);
            return NULL;
        } else
            vd_buf_add(&b, l->p, 1);
        l->p++;
    }
    if (*l->p != '"') {
        vd_buf_free(&b);
        return NULL;
    }
    l->p++;
    return b.p;
}

static char *hcl_ident(struct lex *l)
{
    const char *s = l->p;
    while (isalnum((unsigned char)*l->p) || *l->p == '_' || *l->p == '-' || *l->p == '.')
        l->p++;
    if (l->p == s)
        return NULL;
    return strndup(s, (size_t)(l->p - s));
}

/* body of a block: sequence of  key = value  |  key "label" { ... }  |  key { ... } */
static struct json_object *hcl_body(struct lex *l, char end)
{
    struct json_object *o = json_object_new_object();
    for (;;) {
        skip_ws(l);
        if (*l->p == end) {
            if (end)
                l->p++;
            return o;
        }
        if (!*l->p) {
            snprintf(l->err, l->errlen, "unexpected end of policy");
            json_object_put(o);
            return NULL;
        }
        char *key = *l->p == '"' ? hcl_string(l) : hcl_ident(l);
        if (!key) {
            snprintf(l->err, l->errlen, "unexpected character '%c'", *l->p);
            json_object_put(o);
            return NULL;
        }
        skip_ws(l);
        if (*l->p == '=' || *l->p == ':') {
            l->p++;
            struct json_object *v = hcl_value(l);
            if (!v && *l->err) {
                free(key);
                json_object_put(o);
                return NULL;
            }
            json_object_object_add(o, key, v);
        } else {
            /* labelled block(s): key "label" { body } */
            char *label = NULL;
            if (*l->p == '"') {
                label = hcl_string(l);
                if (!label) {
                    snprintf(l->err, l->errlen, "bad string after %s", key);
                    free(key);
                    json_object_put(o);
                    return NULL;
                }
                skip_ws(l);
            }
            if (*l->p != '{') {
                snprintf(l->err, l->errlen, "expected '{' after %s", key);
                free(key);
                free(label);
                json_object_put(o);
                return NULL;
            }
            l->p++;
            struct json_object *inner = hcl_body(l, '}');
            if (!inner) {
                free(key);
                free(label);
                json_object_put(o);
                return NULL;
            }
            if (label) {
                struct json_object *group = vd_get(o, key);
                if (!group) {
                    group = json_object_new_object();
                    json_object_object_add(o, key, group);
                }
                json_object_object_add(group, label, inner);
            } else
                json_object_object_add(o, key, inner);
            free(label);
        }
        free(key);
        skip_ws(l);
        if (*l->p == ',')
            l->p++;
    }
}

static struct json_object *hcl_value(struct lex *l)
{
    skip_ws(l);
    if (*l->p == '"') {
        char *s = hcl_string(l);
        if (!s) {
            snprintf(l->err, l->errlen, "bad string");
            return NULL;
        }
        struct json_object *v = json_object_new_string(s);
        free(s);
        return v;
    }
    if (*l->p == '[') {
        l->p++;
        struct json_object *a = json_object_new_array();
        for (;;) {
            skip_ws(l);
            if (*l->p == ']') {
                l->p++;
                return a;
            }
            struct json_object *v = hcl_value(l);
            if (!v) {
                if (!*l->err)
                    snprintf(l->err, l->errlen, "bad list element");
                json_object_put(a);
                return NULL;
            }
            json_object_array_add(a, v);
            skip_ws(l);
            if (*l->p == ',')
                l->p++;
            else if (*l->p != ']') {
                snprintf(l->err, l->errlen, "expected ',' or ']' in list");
                json_object_put(a);
                return NULL;
            }
        }
    }
    if (*l->p == '{') {
        l->p++;
        return hcl_body(l, '}');
    }
    if (isdigit((unsigned char)*l->p) || *l->p == '-') {
        char *e;
        long long x = strtoll(l->p, &e, 10);
        l->p = e;
        return json_object_new_int64(x);
    }
    char *id = hcl_ident(l);
    if (id && (!strcmp(id, "true") || !strcmp(id, "false"))) {
        struct json_object *v = json_object_new_boolean(!strcmp(id, "true"));
        free(id);
        return v;
    }
    free(id);
    snprintf(l->err, l->errlen, "unexpected value");
    return NULL;
}

static const char *const known_caps[] = {"create", "read", "update", "delete", "list",
                                         "sudo",   "deny", "patch", "subscribe", "recover"};

struct json_object *vd_policy_parse(const char *text, char *err, size_t errlen)
{
    err[0] = 0;
    struct json_object *tree = NULL;
    const char *s = text;
    while (isspace((unsigned char)*s))
        s++;
    if (*s == '{') {
        tree = json_tokener_parse(text);
        if (!tree || !json_object_is_type(tree, json_type_object)) {
            json_object_put(tree);
            snprintf(err, errlen, "failed to parse policy: invalid JSON");
            return NULL;
        }
    } else {
        struct lex l = {text, err, errlen};
        tree = hcl_body(&l, 0);
        if (!tree) {
            char tmp[256];
            snprintf(tmp, sizeof tmp, "failed to parse policy: %s", err);
            snprintf(err, errlen, "%s", tmp);
            return NULL;
        }
    }
    struct json_object *rules = json_object_new_array();
    struct json_object *paths = vd_get(tree, "path");
    if (paths && !json_object_is_type(paths, json_type_object)) {
        snprintf(err, errlen, "failed to parse policy: \"path\" must be a map of paths");
        json_object_put(tree);
        json_object_put(rules);
        return NULL;
    }
    json_object_object_foreach(paths, path, body)
    {
        struct json_object *caps = json_object_new_array();
        struct json_object *cl = vd_get(body, "capabilities");
        if (cl && json_object_is_type(cl, json_type_array)) {
            for (size_t i = 0; i < json_object_array_length(cl); i++) {
                struct json_object *c = json_object_array_get_idx(cl, i);
                const char *cs = c && json_object_is_type(c, json_type_string) ? json_object_get_string(c) : NULL;
                bool ok = false;
                for (size_t k = 0; cs && k < sizeof known_caps / sizeof *known_caps; k++)
                    ok |= !strcmp(cs, known_caps[k]);
                if (!ok) {
                    snprintf(err, errlen, "failed to parse policy: path \"%s\": invalid capability \"%s\"", path,
                             cs ? cs : "?");
                    json_object_put(caps);
                    json_object_put(rules);
                    json_object_put(tree);
                    return NULL;
                }
                json_object_array_add(caps, json_object_new_string(cs));
            }
        }
        const char *legacy = vd_str(body, "policy");
        if (legacy) {
            const char *add[5] = {0};
            if (!strcmp(legacy, "deny"))
                add[0] = "deny";
            else if (!strcmp(legacy, "read")) {
                add[0] = "read";
                add[1] = "list";
            } else if (!strcmp(legacy, "write")) {
                add[0] = "create"; add[1] = "read"; add[2] = "update"; add[3] = "delete"; add[4] = "list";
            } else if (!strcmp(legacy, "sudo")) {
                add[0] = "create"; add[1] = "read"; add[2] = "update"; add[3] = "delete"; add[4] = "list";
                json_object_array_add(caps, json_object_new_string("sudo"));
            }
            for (int i = 0; i < 5 && add[i]; i++)
                json_object_array_add(caps, json_object_new_string(add[i]));
        }
        struct json_object *r = json_object_new_object();
        const char *pp = path;
        while (*pp == '/')
            pp++;
        json_object_object_add(r, "path", json_object_new_string(pp));
        json_object_object_add(r, "capabilities", caps);
        json_object_array_add(rules, r);
    }
    json_object_put(tree);
    return rules;
}

/* ------------------------------------------------------------------ matching */

/* pattern match: '+' one segment, trailing '*' any suffix */
static bool match(const char *pat, const char *path)
{
    while (*pat) {
        if (*pat == '*' && pat[1] == 0)
            return true;
        if (*pat == '+') {
            while (*path && *path != '/')
                path++;
            pat++;
            continue;
        }
        if (*pat != *path)
            return false;
        pat++;
        path++;
    }
    return *path == 0;
}

static int first_wild(const char *p)
{
    const char *a = strpbrk(p, "+*");
    return a ? (int)(a - p) : (int)strlen(p) + 1;
}

static int count_plus(const char *p)
{
    int n = 0;
    for (; *p; p++)
        n += *p == '+';
    return n;
}

/* >0 if a has higher priority than b (Vault's policy precedence rules) */
static int priority_cmp(const char *a, const char *b)
{
    int fa = first_wild(a), fb = first_wild(b);
    if (fa != fb)
        return fa > fb ? 1 : -1;
    size_t la = strlen(a), lb = strlen(b);
    bool sa = la && a[la - 1] == '*', sb = lb && b[lb - 1] == '*';
    if (sa != sb)
        return sa ? -1 : 1;
    int pa = count_plus(a), pb = count_plus(b);
    if (pa != pb)
        return pa < pb ? 1 : -1;
    if (la != lb)
        return la > lb ? 1 : -1;
    return strcmp(a, b);
}

/* Merged capabilities of the best matching pattern for path across the token's policies.
 * Returns a new array or NULL when nothing matches. */
static struct json_object *caps_for(struct json_object *policies, struct json_object *store, const char *path)
{
    const char *best = NULL;
    size_t np = json_object_array_length(policies);
    for (size_t i = 0; i < np; i++) {
        struct json_object *pol = vd_get(store, json_object_get_string(json_object_array_get_idx(policies, i)));
        struct json_object *rules = vd_get(pol, "rules");
        for (size_t j = 0; rules && j < json_object_array_length(rules); j++) {
            const char *pat = vd_str(json_object_array_get_idx(rules, j), "path");
            if (pat && match(pat, path) && (!best || priority_cmp(pat, best) > 0))
                best = pat;
        }
    }
    if (!best)
        return NULL;
    struct json_object *caps = json_object_new_array();
    for (size_t i = 0; i < np; i++) {
        struct json_object *pol = vd_get(store, json_object_get_string(json_object_array_get_idx(policies, i)));
        struct json_object *rules = vd_get(pol, "rules");
        for (size_t j = 0; rules && j < json_object_array_length(rules); j++) {
            struct json_object *rule = json_object_array_get_idx(rules, j);
            const char *pat = vd_str(rule, "path");
            if (!pat || strcmp(pat, best) != 0)
                continue;
            struct json_object *c = vd_get(rule, "capabilities");
            for (size_t k = 0; c && k < json_object_array_length(c); k++) {
                const char *cs = json_object_get_string(json_object_array_get_idx(c, k));
                if (!vd_list_has(caps, cs))
                    json_object_array_add(caps, json_object_new_string(cs));
            }
        }
    }
    return caps;
}

/* The path as seen from the token's namespace, and that namespace's policy store. */
static char *token_view(struct vd_req *q, const char *path, struct json_object **store)
{
    const char *tns = vd_str(q->token, "namespace");
    if (!tns)
        tns = "";
    *store = vd_get(vd_ns_get(tns), "policies");
    const char *rel = q->ns + strlen(tns);
    size_t n = strlen(rel) + strlen(path) + 1;
    char *full = malloc(n);
    if (!full)
        abort();
    snprintf(full, n, "%s%s", rel, path);
    return full;
}

bool vd_acl_allowed(struct vd_req *q, const char *path, const char *cap)
{
    if (!q->token)
        return false;
    struct json_object *pol = vd_get(q->token, "policies");
    if (vd_list_has(pol, "root"))
        return true;
    struct json_object *store;
    char *full = token_view(q, path, &store);
    struct json_object *caps = caps_for(pol, store, full);
    bool ok = caps && !vd_list_has(caps, "deny") && vd_list_has(caps, cap);
    /* Vault answers create-or-update with either capability when the existence check is absent */
    json_object_put(caps);
    free(full);
    return ok;
}

bool vd_acl_any_under(struct vd_req *q, const char *path)
{
    if (!q->token)
        return false;
    struct json_object *pol = vd_get(q->token, "policies");
    if (vd_list_has(pol, "root"))
        return true;
    struct json_object *store;
    char *full = token_view(q, path, &store);
    size_t fl = strlen(full);
    bool ok = false;
    struct json_object *caps = caps_for(pol, store, full);
    if (caps && !vd_list_has(caps, "deny") && json_object_array_length(caps) > 0)
        ok = true;
    json_object_put(caps);
    /* any rule at or below the mount path with a non-deny capability */
    for (size_t i = 0; !ok && i < json_object_array_length(pol); i++) {
        struct json_object *p = vd_get(store, json_object_get_string(json_object_array_get_idx(pol, i)));
        struct json_object *rules = vd_get(p, "rules");
        for (size_t j = 0; rules && j < json_object_array_length(rules); j++) {
            struct json_object *rule = json_object_array_get_idx(rules, j);
            const char *pat = vd_str(rule, "path");
            struct json_object *c = vd_get(rule, "capabilities");
            if (!pat || !c || vd_list_has(c, "deny") || json_object_array_length(c) == 0)
                continue;
            if (strncmp(pat, full, fl) == 0 || match(pat, full)) {
                ok = true;
                break;
            }
            /* a pattern with '+' whose literal prefix lies under the mount */
            size_t lit = (size_t)first_wild(pat);
            if (lit > fl && strncmp(pat, full, fl) == 0) {
                ok = true;
                break;
            }
        }
    }
    free(full);
    return ok;
}
