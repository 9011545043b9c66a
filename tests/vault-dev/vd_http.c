/* vault-dev: the HTTP layer. Body collection, the /v1/sys/dev/ control endpoints (counters, faults,
 * seal, clock), namespace resolution, authentication, ACL enforcement and routing. */
#include "vd.h"
#include "vd_http.h"

#include <ctype.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

_Atomic int vd_stopping;

/* ------------------------------------------------------------------ responses */

void vd_reply_error(struct vd_resp *r, int status, const char *msg)
{
    r->status = status;
    r->body.len = 0;
    vd_buf_str(&r->body, "{\"errors\":[");
    if (msg)
        vd_json_string(&r->body, msg);
    vd_buf_str(&r->body, "]}\n");
}

void vd_reply_errorf(struct vd_resp *r, int status, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    vd_reply_error(r, status, msg);
}

void vd_reply_204(struct vd_resp *r)
{
    r->status = 204;
    r->body.len = 0;
}

void vd_reply_json(struct vd_resp *r, int status, struct json_object *body)
{
    r->status = status;
    r->body.len = 0;
    vd_json_write(&r->body, body);
}

static void write_auth(struct vd_buf *b, struct json_object *a)
{
    /* HTTPAuth in Go field order; token_policies / identity_policies omitted when empty */
    static const char *const order[] = {"client_token",    "accessor",      "policies",
                                        "token_policies",  "identity_policies", "metadata",
                                        "lease_duration",  "renewable",     "entity_id",
                                        "token_type",      "orphan",        "mfa_requirement",
                                        "num_uses"};
    vd_buf_add(b, "{", 1);
    bool first = true;
    for (size_t i = 0; i < sizeof order / sizeof *order; i++) {
        struct json_object *v = vd_get(a, order[i]);
        if (!v && (i == 3 || i == 4))
            continue;
        if ((i == 3 || i == 4) && json_object_is_type(v, json_type_array) &&
            json_object_array_length(v) == 0)
            continue;
        if (!first)
            vd_buf_add(b, ",", 1);
        first = false;
        vd_json_string(b, order[i]);
        vd_buf_add(b, ":", 1);
        vd_json_write(b, v);
    }
    vd_buf_add(b, "}", 1);
}

void vd_reply_env(struct vd_resp *r, const struct vd_req *q, int status, const struct vd_env *e, bool raw)
{
    struct vd_buf *b = &r->body;
    r->status = status;
    b->len = 0;
    vd_buf_str(b, "{\"request_id\":");
    vd_json_string(b, q->request_id);
    vd_buf_fmt(b, ",\"lease_id\":\"\",\"renewable\":false,\"lease_duration\":%lld,\"data\":",
               (long long)e->lease_duration);
    vd_json_write(b, e->data);
    vd_buf_str(b, ",\"wrap_info\":null,\"warnings\":");
    vd_json_write(b, e->warnings);
    vd_buf_str(b, ",\"auth\":");
    if (e->auth)
        write_auth(b, e->auth);
    else
        vd_buf_str(b, "null");
    vd_buf_str(b, ",\"mount_type\":");
    vd_json_string(b, e->mount_type ? e->mount_type : "");
    vd_buf_str(b, raw ? "}" : "}\n");
}

/* ------------------------------------------------------------------ counters */

static pthread_mutex_t ctr_lock = PTHREAD_MUTEX_INITIALIZER;
static struct json_object *counters; /* "METHOD /path" -> int */
static int64_t counter_total;

static void count_request(const char *method, const char *url)
{
    char key[2048];
    size_t ml = strlen(method), ul = strlen(url);
    if (ml + ul + 2 > sizeof key)
        ul = sizeof key - ml - 2;
    memcpy(key, method, ml);
    key[ml] = ' ';
    memcpy(key + ml + 1, url, ul);
    key[ml + 1 + ul] = 0;
    pthread_mutex_lock(&ctr_lock);
    if (!counters)
        counters = json_object_new_object();
    struct json_object *c = vd_get(counters, key);
    if (c)
        json_object_set_int64(c, json_object_get_int64(c) + 1);
    else
        json_object_object_add(counters, key, json_object_new_int64(1));
    counter_total++;
    pthread_mutex_unlock(&ctr_lock);
}

/* ------------------------------------------------------------------ faults */

enum fault_kind { F_LATENCY, F_STATUS, F_CLOSE, F_TRUNCATE, F_NON_JSON, F_OVERSIZED };
static const char *const fault_names[] = {"latency", "status", "close", "truncate", "non_json", "oversized"};

struct fault {
    int id;
    char method[16];     /* "" = any */
    char prefix[1024];   /* "" = any */
    int64_t remaining;   /* -1 = unlimited (window only) */
    int64_t until_ms;    /* monotonic deadline; 0 = none */
    enum fault_kind kind;
    int64_t latency_ms;
    int status;
    char *body;
    char *content_type;
    int64_t size;
    int64_t hits;
};

#define MAX_FAULTS 64
static pthread_mutex_t fault_lock = PTHREAD_MUTEX_INITIALIZER;
static struct fault faults[MAX_FAULTS];
static int nfaults, next_fault_id = 1;

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void fault_drop(int i)
{
    free(faults[i].body);
    free(faults[i].content_type);
    memmove(&faults[i], &faults[i + 1], sizeof(struct fault) * (size_t)(nfaults - i - 1));
    nfaults--;
}

static void fault_expire_locked(void)
{
    int64_t now = mono_ms();
    for (int i = 0; i < nfaults;) {
        if ((faults[i].until_ms && now >= faults[i].until_ms) || faults[i].remaining == 0)
            fault_drop(i);
        else
            i++;
    }
}

/* Finds the first live rule matching the request, consumes one use and copies it to *out
 * (body/content_type duplicated, caller frees). */
static bool fault_match(const char *method, const char *url, struct fault *out)
{
    bool hit = false;
    pthread_mutex_lock(&fault_lock);
    fault_expire_locked();
    for (int i = 0; i < nfaults; i++) {
        struct fault *f = &faults[i];
        if (f->method[0] && strcasecmp(f->method, method) != 0)
            continue;
        if (f->prefix[0] && strncmp(url, f->prefix, strlen(f->prefix)) != 0)
            continue;
        if (f->remaining > 0)
            f->remaining--;
        f->hits++;
        *out = *f;
        out->body = f->body ? strdup(f->body) : NULL;
        out->content_type = f->content_type ? strdup(f->content_type) : NULL;
        hit = true;
        break;
    }
    fault_expire_locked();
    pthread_mutex_unlock(&fault_lock);
    return hit;
}

static struct json_object *fault_json(const struct fault *f)
{
    struct json_object *o = json_object_new_object();
    json_object_object_add(o, "id", json_object_new_int(f->id));
    json_object_object_add(o, "method", json_object_new_string(f->method));
    json_object_object_add(o, "path_prefix", json_object_new_string(f->prefix));
    json_object_object_add(o, "action", json_object_new_string(fault_names[f->kind]));
    json_object_object_add(o, "remaining", json_object_new_int64(f->remaining));
    json_object_object_add(o, "window_ms_left",
                           json_object_new_int64(f->until_ms ? f->until_ms - mono_ms() : 0));
    json_object_object_add(o, "latency_ms", json_object_new_int64(f->latency_ms));
    json_object_object_add(o, "status", json_object_new_int(f->status));
    json_object_object_add(o, "size", json_object_new_int64(f->size));
    json_object_object_add(o, "hits", json_object_new_int64(f->hits));
    return o;
}

/* Adds a rule from its JSON description; returns id or -1 with msg. */
static int fault_add(struct json_object *b, char *msg, size_t msglen)
{
    struct fault f;
    memset(&f, 0, sizeof f);
    const char *action = vd_str(b, "action");
    int k = -1;
    for (int i = 0; action && i < 6; i++)
        if (!strcmp(action, fault_names[i]))
            k = i;
    if (k < 0) {
        snprintf(msg, msglen, "action must be one of latency, status, close, truncate, non_json, oversized");
        return -1;
    }
    f.kind = (enum fault_kind)k;
    const char *m = vd_str(b, "method");
    if (m && strcmp(m, "*") != 0) {
        if (strlen(m) >= sizeof f.method) {
            snprintf(msg, msglen, "method too long");
            return -1;
        }
        snprintf(f.method, sizeof f.method, "%s", m);
    }
    const char *p = vd_str(b, "path_prefix");
    if (!p)
        p = vd_str(b, "path");
    if (p) {
        if (strlen(p) >= sizeof f.prefix) {
            snprintf(msg, msglen, "path_prefix too long");
            return -1;
        }
        snprintf(f.prefix, sizeof f.prefix, "%s", p);
    }
    int64_t count = vd_int(b, "count", 0), window_ms = vd_int(b, "duration_ms", 0);
    if (vd_get(b, "duration_seconds"))
        window_ms = vd_int(b, "duration_seconds", 0) * 1000;
    if (count < 0 || window_ms < 0) {
        snprintf(msg, msglen, "count and duration must not be negative");
        return -1;
    }
    if (count == 0 && window_ms == 0)
        count = 1;
    f.remaining = count ? count : -1;
    f.until_ms = window_ms ? mono_ms() + window_ms : 0;
    f.latency_ms = vd_int(b, "latency_ms", 0);
    if (f.latency_ms < 0 || f.latency_ms > 600000) {
        snprintf(msg, msglen, "latency_ms must be 0..600000");
        return -1;
    }
    int dflt_status = f.kind == F_STATUS ? 500 : 200;
    f.status = (int)vd_int(b, "status", dflt_status);
    if (f.status < 100 || f.status > 599) {
        snprintf(msg, msglen, "status must be 100..599");
        return -1;
    }
    const char *body = vd_str(b, "body");
    if (!body && vd_get(b, "body") && !json_object_is_type(vd_get(b, "body"), json_type_null)) {
        struct vd_buf tmp = {0};
        vd_json_write(&tmp, vd_get(b, "body"));
        vd_buf_str(&tmp, "\n"); /* like Vault's json.Encoder */
        f.body = tmp.p;
    } else if (body)
        f.body = strdup(body);
    const char *ct = vd_str(b, "content_type");
    if (ct)
        f.content_type = strdup(ct);
    f.size = vd_int(b, "size", 2 * 1024 * 1024);
    if (f.size < 0 || f.size > 256LL * 1024 * 1024) {
        snprintf(msg, msglen, "size must be 0..268435456");
        free(f.body);
        free(f.content_type);
        return -1;
    }
    pthread_mutex_lock(&fault_lock);
    fault_expire_locked();
    if (nfaults == MAX_FAULTS) {
        pthread_mutex_unlock(&fault_lock);
        snprintf(msg, msglen, "too many fault rules (%d)", MAX_FAULTS);
        free(f.body);
        free(f.content_type);
        return -1;
    }
    f.id = next_fault_id++;
    faults[nfaults++] = f;
    pthread_mutex_unlock(&fault_lock);
    return f.id;
}

/* ------------------------------------------------------------------ request helpers */

static const char *header(struct MHD_Connection *c, const char *name)
{
    return MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
}

const char *vd_query(const struct vd_req *q, const char *name)
{
    return MHD_lookup_connection_value(q->conn, MHD_GET_ARGUMENT_KIND, name);
}

static const char *request_token(struct MHD_Connection *c)
{
    const char *t = header(c, "X-Vault-Token");
    if (t && *t)
        return t;
    const char *a = header(c, "Authorization");
    if (a && strncmp(a, "Bearer ", 7) == 0) {
        a += 7;
        while (*a == ' ')
            a++;
        return *a ? a : NULL;
    }
    return NULL;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static char *url_decode(const char *s, size_t n)
{
    char *o = malloc(n + 1), *w = o;
    if (!o)
        abort();
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '+')
            *w++ = ' ';
        else if (s[i] == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            *w++ = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        } else
            *w++ = s[i];
    }
    *w = 0;
    return o;
}

static struct json_object *parse_form(const char *s, size_t n)
{
    struct json_object *o = json_object_new_object();
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && s[j] != '&')
            j++;
        size_t eq = i;
        while (eq < j && s[eq] != '=')
            eq++;
        if (j > i) {
            char *k = url_decode(s + i, eq - i);
            char *v = eq < j ? url_decode(s + eq + 1, j - eq - 1) : strdup("");
            if (*k)
                json_object_object_add(o, k, json_object_new_string(v));
            free(k);
            free(v);
        }
        i = j + 1;
    }
    return o;
}

/* Canonical namespace: strip leading '/', collapse, add trailing '/'; "" for root. */
static char *ns_canon(const char *h)
{
    size_t n = strlen(h);
    char *o = malloc(n + 2), *w = o;
    if (!o)
        abort();
    const char *p = h;
    while (*p) {
        while (*p == '/')
            p++;
        const char *s = p;
        while (*p && *p != '/')
            p++;
        size_t l = (size_t)(p - s);
        if (l == 0 || (l == 1 && s[0] == '.'))
            continue;
        memcpy(w, s, l);
        w += l;
        *w++ = '/';
    }
    *w = 0;
    return o;
}

static bool has_prefix(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

/* ------------------------------------------------------------------ the dev control endpoints */

static bool token_is_root(const char *tok, int64_t now)
{
    struct json_object *t = tok ? vd_token_lookup(tok, now) : NULL;
    return t && vd_list_has(vd_get(t, "policies"), "root");
}

static void dev_handle(struct vd_req *q, const char *sub, struct vd_resp *r)
{
    struct vd_env e = {0};
    pthread_mutex_lock(&vd_lock);
    bool root = token_is_root(q->token_id, q->now);
    pthread_mutex_unlock(&vd_lock);
    if (!root) {
        vd_reply_error(r, 403, "permission denied");
        return;
    }
    if (!strcmp(sub, "counters") && (q->op == VD_OP_READ || q->op == VD_OP_HEAD)) {
        const char *prefix = vd_query(q, "prefix");
        struct json_object *d = json_object_new_object(), *c = json_object_new_object();
        int64_t total = 0;
        pthread_mutex_lock(&ctr_lock);
        if (counters) {
            json_object_object_foreach(counters, k, v)
            {
                const char *path = strchr(k, ' ');
                if (prefix && (!path || !has_prefix(path + 1, prefix)))
                    continue;
                json_object_object_add(c, k, json_object_new_int64(json_object_get_int64(v)));
                total += json_object_get_int64(v);
            }
        }
        pthread_mutex_unlock(&ctr_lock);
        json_object_object_add(d, "counters", c);
        json_object_object_add(d, "total", json_object_new_int64(total));
        e.data = d;
        vd_reply_env(r, q, 200, &e, false);
        json_object_put(d);
        return;
    }
    if ((!strcmp(sub, "counters") && q->op == VD_OP_DELETE) ||
        (!strcmp(sub, "counters/reset") && q->op == VD_OP_UPDATE)) {
        pthread_mutex_lock(&ctr_lock);
        json_object_put(counters);
        counters = NULL;
        counter_total = 0;
        pthread_mutex_unlock(&ctr_lock);
        vd_reply_204(r);
        return;
    }
    if (!strcmp(sub, "faults") && q->op == VD_OP_UPDATE) {
        char msg[256];
        if (!q->body) {
            vd_reply_error(r, 400, "missing fault rule");
            return;
        }
        int id = fault_add(q->body, msg, sizeof msg);
        if (id < 0) {
            vd_reply_error(r, 400, msg);
            return;
        }
        struct json_object *d = json_object_new_object();
        json_object_object_add(d, "id", json_object_new_int(id));
        e.data = d;
        vd_reply_env(r, q, 200, &e, false);
        json_object_put(d);
        return;
    }
    if (!strcmp(sub, "faults") && (q->op == VD_OP_READ || q->op == VD_OP_LIST)) {
        struct json_object *d = json_object_new_object(), *a = json_object_new_array();
        pthread_mutex_lock(&fault_lock);
        fault_expire_locked();
        for (int i = 0; i < nfaults; i++)
            json_object_array_add(a, fault_json(&faults[i]));
        pthread_mutex_unlock(&fault_lock);
        json_object_object_add(d, "faults", a);
        e.data = d;
        vd_reply_env(r, q, 200, &e, false);
        json_object_put(d);
        return;
    }
    if (has_prefix(sub, "faults") && q->op == VD_OP_DELETE) {
        int id = sub[6] == '/' ? atoi(sub + 7) : 0;
        bool found = false;
        pthread_mutex_lock(&fault_lock);
        for (int i = 0; i < nfaults; i++) {
            if (id == 0 || faults[i].id == id) {
                fault_drop(i);
                i--;
                found = true;
            }
        }
        pthread_mutex_unlock(&fault_lock);
        if (id && !found)
            vd_reply_error(r, 404, NULL);
        else
            vd_reply_204(r);
        return;
    }
    if ((!strcmp(sub, "seal") || !strcmp(sub, "unseal")) && q->op == VD_OP_UPDATE) {
        pthread_mutex_lock(&vd_lock);
        json_object_object_add(vd_state, "sealed", json_object_new_boolean(!strcmp(sub, "seal")));
        vd_state_dirty();
        vd_state_flush_if_dirty();
        pthread_mutex_unlock(&vd_lock);
        vd_reply_204(r);
        return;
    }
    if (!strcmp(sub, "clock")) {
        if (q->op == VD_OP_UPDATE) {
            struct json_object *off = vd_get(q->body, "offset_seconds"), *adv = vd_get(q->body, "advance_seconds");
            int64_t v;
            if (off && vd_as_int(off, &v) == 0)
                vd_set_clock_offset(v);
            else if (adv && vd_as_int(adv, &v) == 0)
                vd_set_clock_offset(vd_clock_offset() + v);
            else {
                vd_reply_error(r, 400, "offset_seconds or advance_seconds (integer) required");
                return;
            }
        } else if (q->op != VD_OP_READ) {
            vd_reply_error(r, 405, NULL);
            return;
        }
        struct json_object *d = json_object_new_object();
        json_object_object_add(d, "offset_seconds", json_object_new_int64(vd_clock_offset()));
        json_object_object_add(d, "now", vd_time_obj(vd_now_ns()));
        e.data = d;
        vd_reply_env(r, q, 200, &e, false);
        json_object_put(d);
        return;
    }
    if (!strcmp(sub, "save") && q->op == VD_OP_UPDATE) {
        if (!vd_cfg.state_file) {
            vd_reply_error(r, 400, "no --state file configured");
            return;
        }
        pthread_mutex_lock(&vd_lock);
        int rc = vd_state_save(vd_cfg.state_file);
        pthread_mutex_unlock(&vd_lock);
        if (rc)
            vd_reply_error(r, 500, "cannot write the state file");
        else
            vd_reply_204(r);
        return;
    }
    if (!strcmp(sub, "info") && q->op == VD_OP_READ) {
        struct json_object *d = json_object_new_object();
        json_object_object_add(d, "version", json_object_new_string(VD_VERSION));
        json_object_object_add(d, "unseal_key", json_object_new_string(vd_cfg.unseal_key));
        json_object_object_add(d, "standby_of", vd_cfg.standby_of ? json_object_new_string(vd_cfg.standby_of) : NULL);
        json_object_object_add(d, "state_file", vd_cfg.state_file ? json_object_new_string(vd_cfg.state_file) : NULL);
        pthread_mutex_lock(&vd_lock);
        json_object_object_add(d, "sealed", json_object_new_boolean(vd_bool(vd_state, "sealed", false)));
        pthread_mutex_unlock(&vd_lock);
        e.data = d;
        vd_reply_env(r, q, 200, &e, false);
        json_object_put(d);
        return;
    }
    vd_reply_error(r, 404, "unknown sys/dev endpoint");
}

/* ------------------------------------------------------------------ logical dispatch */

static bool is_unauth_path(struct vd_req *q)
{
    const char *p = q->path;
    if (!strcmp(p, "sys/health") || !strcmp(p, "sys/seal-status") || !strcmp(p, "sys/unseal") ||
        !strcmp(p, "sys/leader"))
        return true;
    if (has_prefix(p, "auth/") && !has_prefix(p, "auth/token/")) {
        size_t l = strlen(p);
        if (l > 6 && !strcmp(p + l - 6, "/login"))
            return true;
        const char *lg = strstr(p, "/login/"); /* userpass: auth/<mount>/login/<username> */
        if (lg != NULL && lg[7] != '\0' && strchr(lg + 7, '/') == NULL)
            return true;
    }
    return false;
}

static bool sealed_exempt(const char *p)
{
    return !strcmp(p, "sys/health") || !strcmp(p, "sys/seal-status") || !strcmp(p, "sys/unseal") ||
           !strcmp(p, "sys/leader");
}

static const char *op_cap(struct vd_req *q)
{
    switch (q->op) {
    case VD_OP_READ:
    case VD_OP_HEAD:
        return "read";
    case VD_OP_LIST:
        return "list";
    case VD_OP_DELETE:
        return "delete";
    case VD_OP_PATCH:
        return "patch";
    case VD_OP_UPDATE:
        return "update";
    }
    return "read";
}

static void logical(struct vd_req *q, struct vd_resp *r)
{
    if (vd_bool(vd_state, "sealed", false) && !sealed_exempt(q->path)) {
        vd_reply_error(r, 503, "Vault is sealed");
        return;
    }
    if (!is_unauth_path(q) && !has_prefix(q->path, "sys/internal/ui/mounts")) {
        if (!q->token_id) {
            vd_reply_error(r, 403, "permission denied");
            return;
        }
        q->token = vd_token_lookup(q->token_id, q->now);
        if (!q->token) {
            vd_reply_error(r, 403, "2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n");
            return;
        }
        q->is_root = vd_list_has(vd_get(q->token, "policies"), "root");
        const char *tns = vd_str(q->token, "namespace");
        if (!tns)
            tns = "";
        if (!has_prefix(q->ns, tns)) {
            vd_reply_error(r, 403, "permission denied");
            return;
        }
        /* ACL */
        const char *cap = op_cap(q);
        const char *mpath = NULL;
        struct json_object *mount = NULL;
        if (!has_prefix(q->path, "sys/") && !has_prefix(q->path, "auth/"))
            mount = vd_mount_match(q->nsobj, q->path, &mpath);
        if (q->op == VD_OP_UPDATE && mount && !vd_kv_exists(q, mount, mpath))
            cap = "create";
        /* Vault gives a list request's path a trailing '/' before the ACL check (http/logical.go
           buildLogicalRequestNoAuth; vault-http-api.md section 0.3, Methods): a glob rule under
           secret/metadata/x/ allows LIST secret/metadata/x, a rule for secret/metadata/x does not */
        size_t pl = strlen(q->path);
        char *acl_path = NULL;
        if (q->op == VD_OP_LIST && (pl == 0 || q->path[pl - 1] != '/') && (acl_path = malloc(pl + 2)) != NULL)
            snprintf(acl_path, pl + 2, "%s/", q->path);
        bool allowed = vd_acl_allowed(q, acl_path ? acl_path : q->path, cap);
        free(acl_path);
        if (!allowed) {
            vd_reply_error(r, 403, "permission denied");
            return;
        }
        bool needs_sudo = !strcmp(q->path, "sys/seal") ||
                          (has_prefix(q->path, "sys/auth/") && q->op != VD_OP_READ);
        if (needs_sudo && !vd_acl_allowed(q, q->path, "sudo")) {
            vd_reply_error(r, 403, "permission denied");
            return;
        }
        vd_token_use(q);
    } else {
        const char *tok = q->token_id;
        if (tok) {
            q->token = vd_token_lookup(tok, q->now);
            q->is_root = q->token && vd_list_has(vd_get(q->token, "policies"), "root");
        }
    }
    if (has_prefix(q->path, "sys/") || !strcmp(q->path, "sys")) {
        if (vd_sys_handle(q, r))
            return;
    } else if (has_prefix(q->path, "auth/")) {
        if (vd_auth_handle(q, r))
            return;
    } else {
        const char *mpath = NULL;
        struct json_object *m = vd_mount_match(q->nsobj, q->path, &mpath);
        if (m) {
            vd_kv_handle(q, r, m, mpath);
            return;
        }
    }
    vd_reply_errorf(r, 404, "no handler for route \"%s\". route entry not found.", q->path);
}

/* Resolves the namespace: header + path, the longest existing namespace prefix wins. */
static void resolve_ns(struct vd_req *q, const char *hdr, const char *path)
{
    char *h = ns_canon(hdr ? hdr : "");
    size_t n = strlen(h) + strlen(path) + 1;
    char *full = malloc(n);
    if (!full)
        abort();
    snprintf(full, n, "%s%s", h, path);
    free(h);
    const char *best = "";
    size_t best_len = 0;
    json_object_object_foreach(vd_get(vd_state, "namespaces"), k, v)
    {
        (void)v;
        size_t kl = strlen(k);
        if (kl > best_len && strncmp(full, k, kl) == 0) {
            best = k;
            best_len = kl;
        }
    }
    q->ns = strdup(best);
    q->nsobj = vd_ns_get(best);
    q->path = strdup(full + best_len);
    free(full);
}

static void append_query(struct vd_buf *b, struct MHD_Connection *c);

static void standby_redirect(struct vd_req *q, const char *url, struct vd_resp *r)
{
    struct vd_buf loc = {0};
    const char *base = vd_cfg.standby_of;
    size_t bl = strlen(base);
    while (bl && base[bl - 1] == '/')
        bl--;
    vd_buf_add(&loc, base, bl);
    vd_buf_str(&loc, url);
    append_query(&loc, q->conn);
    r->status = 307;
    r->location = loc.p;
    r->body.len = 0;
    r->content_type = "text/html; charset=utf-8";
}

struct qctx {
    struct vd_buf *b;
    int n;
};

static void pct(struct vd_buf *b, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '/')
            vd_buf_add(b, s, 1);
        else
            vd_buf_fmt(b, "%%%02X", c);
    }
}

static enum MHD_Result qiter(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    struct qctx *x = cls;
    vd_buf_str(x->b, x->n++ ? "&" : "?");
    pct(x->b, key);
    if (value) {
        vd_buf_str(x->b, "=");
        pct(x->b, value);
    }
    return MHD_YES;
}

static void append_query(struct vd_buf *b, struct MHD_Connection *c)
{
    struct qctx x = {b, 0};
    MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, qiter, &x);
}

/* Builds the logical request from the HTTP one and runs it; fills *r. */
void vd_process(struct MHD_Connection *c, const char *url, const char *method, const char *body,
                size_t body_len, bool too_large, struct vd_resp *r)
{
    struct vd_req q;
    memset(&q, 0, sizeof q);
    q.conn = c;
    q.http_method = method;
    q.now = vd_now_ns();
    q.token_id = request_token(c);
    q.content_type = header(c, "Content-Type");
    vd_request_id(q.request_id);

    if (!has_prefix(url, "/v1/")) {
        vd_reply_error(r, 404, NULL);
        return;
    }
    if (!strcmp(method, "GET"))
        q.op = VD_OP_READ;
    else if (!strcmp(method, "HEAD"))
        q.op = VD_OP_HEAD;
    else if (!strcmp(method, "POST") || !strcmp(method, "PUT"))
        q.op = VD_OP_UPDATE;
    else if (!strcmp(method, "DELETE"))
        q.op = VD_OP_DELETE;
    else if (!strcmp(method, "LIST"))
        q.op = VD_OP_LIST;
    else if (!strcmp(method, "PATCH"))
        q.op = VD_OP_PATCH;
    else {
        vd_reply_error(r, 405, NULL);
        return;
    }
    if (q.op == VD_OP_READ) {
        const char *l = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "list");
        if (l) {
            bool b;
            struct json_object *s = json_object_new_string(l);
            int bad = vd_as_bool(s, &b);
            json_object_put(s);
            if (bad) {
                vd_reply_error(r, 400, NULL);
                return;
            }
            if (b)
                q.op = VD_OP_LIST;
        }
    }
    if (too_large) {
        vd_reply_error(r, 413, "http: request body too large");
        return;
    }
    /* dev endpoints */
    if (has_prefix(url, "/v1/sys/dev/")) {
        if (body_len && (q.op == VD_OP_UPDATE)) {
            q.body = json_tokener_parse(body);
            if (!q.body || !json_object_is_type(q.body, json_type_object)) {
                json_object_put(q.body);
                vd_reply_error(r, 400, "error parsing JSON");
                return;
            }
        }
        dev_handle(&q, url + 12, r);
        json_object_put(q.body);
        return;
    }
    if (vd_cfg.standby_of && strcmp(url, "/v1/sys/health") != 0 && strcmp(url, "/v1/sys/seal-status") != 0 &&
        strcmp(url, "/v1/sys/leader") != 0) {
        standby_redirect(&q, url, r);
        return;
    }
    /* body */
    if (q.op == VD_OP_PATCH) {
        const char *ct = q.content_type ? q.content_type : "";
        if (!has_prefix(ct, "application/merge-patch+json")) {
            vd_reply_errorf(r, 415, "PATCH requires Content-Type of application/merge-patch+json, provided %s", ct);
            return;
        }
    }
    if ((q.op == VD_OP_UPDATE || q.op == VD_OP_PATCH) && body_len) {
        size_t i = 0;
        while (i < body_len && isspace((unsigned char)body[i]))
            i++;
        bool form = q.content_type && has_prefix(q.content_type, "application/x-www-form-urlencoded") &&
                    i < body_len && body[i] != '{' && body[i] != '[';
        if (form)
            q.body = parse_form(body, body_len);
        else if (i < body_len) {
            struct json_tokener *tok = json_tokener_new_ex(64);
            q.body = json_tokener_parse_ex(tok, body, (int)body_len);
            enum json_tokener_error je = json_tokener_get_error(tok);
            json_tokener_free(tok);
            if (je != json_tokener_success || (q.body && !json_object_is_type(q.body, json_type_object))) {
                json_object_put(q.body);
                vd_reply_error(r, 400, "error parsing JSON");
                return;
            }
        }
    }
    pthread_mutex_lock(&vd_lock);
    resolve_ns(&q, header(c, "X-Vault-Namespace"), url + 4);
    logical(&q, r);
    json_object_object_del(vd_state, "_last_use_token"); /* token copy kept for its last use */
    vd_state_flush_if_dirty();
    pthread_mutex_unlock(&vd_lock);
    json_object_put(q.body);
    free(q.path);
    free(q.ns);
}

/* ------------------------------------------------------------------ MHD glue */

struct rctx {
    struct vd_buf body;
    size_t total;
    bool too_large;
};

struct trunc_ctx {
    char *data;
    size_t len, sent, cut;
};

static ssize_t trunc_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct trunc_ctx *t = cls;
    if (pos >= t->cut)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    size_t n = t->cut - (size_t)pos;
    if (n > max)
        n = max;
    memcpy(buf, t->data + pos, n);
    return (ssize_t)n;
}

static void trunc_free(void *cls)
{
    struct trunc_ctx *t = cls;
    free(t->data);
    free(t);
}

static enum MHD_Result send_resp(struct MHD_Connection *c, struct vd_resp *r, const char *ns_hdr,
                                 bool truncate)
{
    struct MHD_Response *resp;
    if (truncate && r->body.len > 1) {
        struct trunc_ctx *t = calloc(1, sizeof *t);
        if (!t)
            abort();
        t->data = r->body.p;
        t->len = r->body.len;
        t->cut = r->body.len / 2;
        r->body.p = NULL;
        r->body.len = r->body.cap = 0;
        resp = MHD_create_response_from_callback(t->len, 64 * 1024, trunc_reader, t, trunc_free);
    } else {
        resp = MHD_create_response_from_buffer(r->body.len, r->body.p ? r->body.p : (void *)"",
                                               MHD_RESPMEM_MUST_COPY);
    }
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    MHD_add_response_header(resp, "Content-Type", r->content_type ? r->content_type : "application/json");
    if (ns_hdr && *ns_hdr)
        MHD_add_response_header(resp, "X-Vault-Namespace", ns_hdr);
    if (r->location)
        MHD_add_response_header(resp, "Location", r->location);
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    return ok;
}

static void sleep_ms(int64_t ms)
{
    while (ms > 0 && !vd_stopping) {
        int64_t step = ms > 50 ? 50 : ms;
        struct timespec ts = {(time_t)(step / 1000), (long)(step % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        ms -= step;
    }
}

enum MHD_Result vd_access(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                          const char *version, const char *upload_data, size_t *upload_data_size,
                          void **con_cls)
{
    (void)cls;
    (void)version;
    struct rctx *x = *con_cls;
    if (!x) {
        x = calloc(1, sizeof *x);
        if (!x)
            return MHD_NO;
        *con_cls = x;
        const char *cl = header(c, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > VD_MAX_BODY)
            x->too_large = true;
        return MHD_YES;
    }
    if (*upload_data_size) {
        x->total += *upload_data_size;
        if (!x->too_large && x->total <= VD_MAX_BODY)
            vd_buf_add(&x->body, upload_data, *upload_data_size);
        else if (!x->too_large || x->body.p) {
            x->too_large = true;
            vd_buf_free(&x->body);
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (x->too_large)
        vd_buf_free(&x->body);

    struct vd_resp r;
    memset(&r, 0, sizeof r);
    bool dev = has_prefix(url, "/v1/sys/dev/");
    struct fault f;
    bool faulted = false;
    if (!dev) {
        count_request(method, url);
        faulted = fault_match(method, url, &f);
    }
    bool truncate = false;
    if (faulted) {
        if (f.latency_ms)
            sleep_ms(f.latency_ms);
        switch (f.kind) {
        case F_LATENCY:
            break;
        case F_CLOSE:
            free(f.body);
            free(f.content_type);
            return MHD_NO;
        case F_STATUS:
            r.status = f.status;
            if (f.body)
                vd_buf_str(&r.body, f.body);
            else
                vd_reply_error(&r, f.status, "injected fault");
            r.content_type = f.content_type;
            break;
        case F_NON_JSON:
            r.status = f.status;
            vd_buf_str(&r.body, f.body ? f.body : "<html><body><h1>502 Bad Gateway</h1>not json</body></html>\n");
            r.content_type = f.content_type ? f.content_type : "text/html";
            break;
        case F_OVERSIZED: {
            r.status = f.status;
            char rid[37];
            vd_uuid(rid);
            vd_buf_fmt(&r.body, "{\"request_id\":\"%s\",\"lease_id\":\"\",\"renewable\":false,"
                                "\"lease_duration\":0,\"data\":{\"data\":{\"pad\":\"", rid);
            const char *tail = "\"},\"metadata\":{\"version\":1}},\"wrap_info\":null,\"warnings\":null,\"auth\":null}\n";
            size_t want = (size_t)f.size, have = r.body.len + strlen(tail);
            char chunk[4096];
            memset(chunk, 'x', sizeof chunk);
            while (have < want) {
                size_t n = want - have > sizeof chunk ? sizeof chunk : want - have;
                vd_buf_add(&r.body, chunk, n);
                have += n;
            }
            vd_buf_str(&r.body, tail);
            r.content_type = f.content_type;
            break;
        }
        case F_TRUNCATE:
            truncate = true;
            break;
        }
    }
    if (!faulted || f.kind == F_LATENCY || f.kind == F_TRUNCATE)
        vd_process(c, url, method, x->body.p ? x->body.p : "", x->body.len, x->too_large, &r);
    if (faulted) {
        free(f.body);
        /* content_type is referenced by r until the response is queued */
    }
    enum MHD_Result ok = send_resp(c, &r, header(c, "X-Vault-Namespace"), truncate);
    if (faulted)
        free(f.content_type);
    vd_buf_free(&r.body);
    free(r.location);
    return ok;
}

void vd_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    struct rctx *x = *con_cls;
    if (x) {
        vd_buf_free(&x->body);
        free(x);
        *con_cls = NULL;
    }
}
