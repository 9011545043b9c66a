/*
 * vks-agent lookups, on worker threads: a protocol key -> a Vault keysource (the configured
 * mount/path template) -> vks_resolve() for the user name (unless fixed) and the password, the
 * same core operation as the Lua module (cache, restrictions, decryption, one audit event each)
 * -> the protocol's reply, built directly in an arena slot.
 *
 * Result policy (docs/agent.md "Answers"): NOTFOUND only when no credential exists for the key
 * (Vault 404: not_found) or the key is not one this agent manages (malformed, a form that is off,
 * a placeholder it lacks); every other failure (Vault unreachable with no stale copy, restricted,
 * deleted/destroyed, permission, audit refused, a user name with ':', ...) is TEMP, so the MTA
 * defers instead of sending without AUTH.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent.h"
#include "vks_resolver.h"

const char *ag_proto_name(enum ag_proto p)
{
    return p == AG_PROTO_SOCKETMAP ? "socketmap" : p == AG_PROTO_EXIM ? "exim"
           : p == AG_PROTO_VAULTAPI ? "vault_api" : "unknown";
}

const char *ag_result_name(enum ag_result r)
{
    static const char *const n[] = { "OK", "NOTFOUND", "TEMP", "PERM" };
    return r < AG_R_COUNT ? n[r] : "unknown";
}

/* A safe path component: letters, digits and . - _ + @, not starting with '.', no ".." */
static bool safe_component(const char *s, size_t n)
{
    if (n == 0 || s[0] == '.' || memmem(s, n, "..", 2) != NULL)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!(isalnum(ch) || ch == '.' || ch == '-' || ch == '_' || ch == '+' || ch == '@'))
            return false;
    }
    return true;
}

bool ag_key_form(const char *key, enum ag_form *form)
{
    if (key[0] == '\0')
        return false;
    if (strchr(key, '@') != NULL) {
        *form = AG_FORM_SENDER;
        return true;
    }
    if (key[0] == '[' || strchr(key, ':') != NULL) {
        *form = AG_FORM_NEXTHOP;
        return true;
    }
    *form = AG_FORM_HOST;
    return true;
}

/* Splits a nexthop "[host]:port", "[host]", "host:port" into host and port ("" when none). */
static bool split_nexthop(const char *key, char *host, size_t hn, char *port, size_t pn)
{
    const char *h = key, *he, *p = "";
    if (key[0] == '[') {
        h = key + 1;
        he = strchr(h, ']');
        if (he == NULL)
            return false;
        if (he[1] == ':')
            p = he + 2;
        else if (he[1] != '\0')
            return false;
    } else {
        he = strrchr(key, ':');
        if (he == NULL)
            he = key + strlen(key);
        else
            p = he + 1;
    }
    size_t n = (size_t)(he - h);
    if (n == 0 || n >= hn || strlen(p) >= pn)
        return false;
    memcpy(host, h, n);
    host[n] = '\0';
    snprintf(port, pn, "%s", p);
    return true;
}

int ag_expand_path(const char *tmpl, const char *key, enum ag_form form, char *out, size_t n,
                   char *host_out, size_t hn, char *domain_out, size_t dn)
{
    char host[AG_KEY_MAX + 1] = "", port[16] = "", sender[AG_KEY_MAX + 1] = "", domain[AG_KEY_MAX + 1] = "";
    bool has_host = false, has_port = false, has_sender = false;
    if (form == AG_FORM_HOST) {
        snprintf(host, sizeof host, "%s", key);
        has_host = true;
    } else if (form == AG_FORM_NEXTHOP) {
        if (!split_nexthop(key, host, sizeof host, port, sizeof port))
            return 0;
        has_host = true;
        has_port = port[0] != '\0';
        for (const char *q = port; *q; q++)
            if (!isalnum((unsigned char)*q))
                return 0;
    } else {
        const char *at = strrchr(key, '@');
        snprintf(sender, sizeof sender, "%s", key);
        snprintf(domain, sizeof domain, "%s", at + 1);
        has_sender = true;
    }
    if (has_host && (!safe_component(host, strlen(host)) || strchr(host, '@') != NULL))
        return 0;
    if (has_sender && (!safe_component(sender, strlen(sender)) || !safe_component(domain, strlen(domain))))
        return 0;
    size_t w = 0;
    for (const char *p = tmpl; *p; p++) {
        const char *val = NULL;
        size_t adv = 0;
        if (*p == '{') {
            if (strncmp(p, "{key}", 5) == 0) {
                val = key;
                adv = 5;
                if (!safe_component(key, strlen(key)))
                    return 0;
            } else if (strncmp(p, "{host}", 6) == 0) {
                val = has_host ? host : NULL;
                adv = 6;
            } else if (strncmp(p, "{port}", 6) == 0) {
                val = has_port ? port : NULL;
                adv = 6;
            } else if (strncmp(p, "{sender}", 8) == 0) {
                val = has_sender ? sender : NULL;
                adv = 8;
            } else if (strncmp(p, "{domain}", 8) == 0) {
                val = has_sender ? domain : NULL;
                adv = 8;
            }
            if (val == NULL)
                return 0; /* a placeholder this key form does not have: not our key */
            size_t vl = strlen(val);
            if (w + vl >= n)
                return -1;
            memcpy(out + w, val, vl);
            w += vl;
            p += adv - 1;
            continue;
        }
        if (w + 1 >= n)
            return -1;
        out[w++] = *p;
    }
    out[w] = '\0';
    snprintf(host_out, hn, "%s", host);
    snprintf(domain_out, dn, "%s", domain);
    return 1;
}

long ag_exim_escape(const unsigned char *v, size_t len, unsigned char *out, size_t n)
{
    size_t w = 0;
    for (size_t i = 0; i < len; i++) {
        if (v[i] == '\0' || v[i] == '\n' || v[i] == '\r')
            return -1;
        size_t need = v[i] == '^' ? 2 : 1;
        if (w + need > n)
            return -1;
        out[w++] = v[i];
        if (v[i] == '^')
            out[w++] = '^';
    }
    return (long)w;
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

vks_status ag_resolve_field(const struct ag_job *job, const struct ag_cred_map *m, const char *path,
                            const char *field, int kv_version, long long version,
                            const struct vks_ctx *ctx, const char *const *siblings, size_t n_siblings,
                            vks_secret *out, int64_t *secret_version, struct vks_err *err)
{
    struct vks_field f[6];
    size_t n = 0;
    f[n++] = (struct vks_field){ .name = "vault_mount", .type = VKS_FT_STRING, .str = m->mount, .len = strlen(m->mount) };
    f[n++] = (struct vks_field){ .name = "vault_path", .type = VKS_FT_STRING, .str = path, .len = strlen(path) };
    f[n++] = (struct vks_field){ .name = "vault_key", .type = VKS_FT_STRING, .str = field, .len = strlen(field) };
    if (m->namespace_ != NULL)
        f[n++] = (struct vks_field){ .name = "vault_namespace", .type = VKS_FT_STRING, .str = m->namespace_,
                                     .len = strlen(m->namespace_) };
    if (kv_version != VKS_KV_UNSET) {
        if (kv_version == VKS_KV_AUTO)
            f[n++] = (struct vks_field){ .name = "vault_kv_version", .type = VKS_FT_STRING, .str = "auto", .len = 4 };
        else
            f[n++] = (struct vks_field){ .name = "vault_kv_version", .type = VKS_FT_INTEGER, .ival = kv_version };
    }
    if (version > 0)
        f[n++] = (struct vks_field){ .name = "vault_version", .type = VKS_FT_INTEGER, .ival = version };
    struct vks_keysource ks;
    memset(&ks, 0, sizeof ks);
    vks_err_clear(err);
    vks_status st = vks_keysource_from_fields(f, n, &ks, err);
    static const char *const api[] = { "agent.socketmap", "agent.exim", "agent.vault_api" };
    struct vks_resolve_req req = {
        .api = api[job->proto < AG_PROTO_COUNT ? job->proto : 0],
        .ks = st == VKS_OK ? &ks : NULL,
        .ctx = ctx,
        .sibling_keys = siblings,
        .n_sibling_keys = n_siblings > VKS_KV_SIBLINGS_MAX ? VKS_KV_SIBLINGS_MAX : n_siblings,
        .hit_only = job->hit_only,
    };
    struct vks_resolve_info info;
    double t0 = job->hit_only ? 0 : mono_s();
    st = vks_resolve(&req, out, &info, err);
    if (st == VKS_E_NOT_CACHED) { /* a hit-only try that found nothing: the pool repeats it */
        vks_keysource_clear(&ks);
        return st;
    }
    ag_metrics_outcome(info.outcome);
    if (strcmp(info.outcome, "miss") == 0 || strcmp(info.outcome, "refresh") == 0 ||
        strcmp(info.outcome, "bypass") == 0 || strcmp(info.outcome, "error") == 0 ||
        strcmp(info.outcome, "stale") == 0)
        ag_metrics_vault_latency(mono_s() - t0);
    if (secret_version != NULL)
        *secret_version = info.secret_version;
    vks_keysource_clear(&ks);
    return st;
}

static vks_status resolve_field(const struct ag_job *job, const struct ag_cred_map *m, const char *path,
                                const char *field, const struct vks_ctx *ctx, const char *sibling,
                                vks_secret *out, struct vks_err *err)
{
    return ag_resolve_field(job, m, path, field, m->kv_version, 0, ctx, &sibling, sibling != NULL ? 1 : 0, out,
                            NULL, err);
}

static enum ag_result classify(vks_status st)
{
    return st == VKS_E_NOT_FOUND ? AG_R_NOTFOUND : AG_R_TEMP;
}

/* The reply bytes for a found credential, in an arena slot. */
static int build_ok(struct ag_job *job, const unsigned char *user, size_t ul, const vks_secret *pw)
{
    struct vks_err ve;
    if (job->proto == AG_PROTO_SOCKETMAP) {
        size_t payload = 3 + ul + 1 + pw->len; /* "OK " user ":" password */
        char hdr[24];
        int hl = snprintf(hdr, sizeof hdr, "%zu:", payload);
        size_t total = (size_t)hl + payload + 1;
        if (total > VKS_SECRET_MAX || vks_secret_alloc(total, &job->reply, &ve) != VKS_OK)
            return -1;
        unsigned char *p = job->reply.data;
        memcpy(p, hdr, (size_t)hl);
        p += hl;
        memcpy(p, "OK ", 3);
        p += 3;
        memcpy(p, user, ul);
        p += ul;
        *p++ = ':';
        memcpy(p, pw->data, pw->len);
        p += pw->len;
        *p++ = ',';
        job->reply.len = total;
        return 0;
    }
    /* exim: user | pass | plain (user^pass), '^' doubled; no trailing newline. After expansion Exim
     * reads "^^" as '^' and a single '^' as NUL, left to right, so in "^USER^PASS" a user name or a
     * password that starts with '^' cannot be told from the separator: refused. */
    if ((ul > 0 && user[0] == '^') || (pw->len > 0 && pw->data[0] == '^'))
        return -2;
    if (vks_secret_alloc(VKS_SECRET_MAX, &job->reply, &ve) != VKS_OK)
        return -1;
    long w = 0, w2 = 0;
    if (strcmp(job->item, "user") == 0) {
        w = ag_exim_escape(user, ul, job->reply.data, job->reply.cap);
    } else if (strcmp(job->item, "pass") == 0) {
        w = ag_exim_escape(pw->data, pw->len, job->reply.data, job->reply.cap);
    } else {
        w = ag_exim_escape(user, ul, job->reply.data, job->reply.cap - 1);
        if (w >= 0) {
            job->reply.data[w++] = '^';
            w2 = ag_exim_escape(pw->data, pw->len, job->reply.data + w, job->reply.cap - (size_t)w);
            w = w2 < 0 ? -1 : w + w2;
        }
    }
    if (w < 0) {
        vks_secret_free(&job->reply);
        return -2;
    }
    job->reply.len = (size_t)w;
    return 0;
}

static void set_temp(struct ag_job *job, const char *why)
{
    job->result = AG_R_TEMP;
    snprintf(job->why, sizeof job->why, "%s", why);
}

/* Lowercases and classifies the key, expands the path. Returns false when the key is not ours. */
static bool job_path(struct ag_job *job, const struct ag_listener_conf *lc, char *key, char *path,
                     size_t pn, char *host, char *domain)
{
    for (char *p = key; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    enum ag_form form = AG_FORM_HOST;
    if (!ag_key_form(key, &form) || (job->proto == AG_PROTO_SOCKETMAP && !lc->forms[form]) ||
        (job->proto == AG_PROTO_EXIM && form == AG_FORM_SENDER)) {
        snprintf(job->why, sizeof job->why, "key form not managed");
        return false;
    }
    int r = ag_expand_path(lc->cred.path, key, form, path, pn, host, AG_KEY_MAX + 1, domain, AG_KEY_MAX + 1);
    if (r <= 0) {
        snprintf(job->why, sizeof job->why, r < 0 ? "key too long" : "key does not fit the path template");
        return false;
    }
    return true;
}

bool ag_inline_allowed(const struct ag_conf *c)
{
    const struct vks_audit_config *a = &c->audit;
    bool sinks = a->file != NULL || a->syslog || a->stderr_sink;
    return c->inline_hits && (!sinks || a->mode == VKS_AUDIT_ASYNC);
}

void ag_job_clear(struct ag_job *job)
{
    vks_secret_free(&job->user);
    job->have_user = false;
}

bool ag_lookup_inline(struct ag_job *job)
{
    job->hit_only = true;
    job->needs_pool = false;
    ag_lookup_run(job);
    job->hit_only = false;
    return !job->needs_pool;
}

/* The user name: from an inline try that got it, fixed, or read (with the password as a sibling
 * of the same Vault read). VKS_E_NOT_CACHED: a hit-only try found nothing. */
static vks_status job_user(struct ag_job *job, const struct ag_cred_map *m, const char *path,
                           const struct vks_ctx *ctx, vks_secret *user, const unsigned char **uname,
                           size_t *ul, struct vks_err *err)
{
    *uname = (const unsigned char *)m->username;
    *ul = m->username != NULL ? strlen(m->username) : 0;
    if (m->username_field == NULL)
        return VKS_OK;
    vks_status st = VKS_OK;
    if (job->have_user) {
        *user = job->user;
        job->user = VKS_SECRET_EMPTY;
        job->have_user = false;
    } else {
        st = resolve_field(job, m, path, m->username_field, ctx, m->password_field, user, err);
    }
    *uname = user->data;
    *ul = user->len;
    return st;
}

void ag_lookup_run(struct ag_job *job)
{
    if (job->proto == AG_PROTO_VAULTAPI) {
        ag_lookup_api(job);
        return;
    }
    const struct ag_listener_conf *lc = &job->conf->lst[job->proto];
    const struct ag_cred_map *m = &lc->cred;
    char key[AG_KEY_MAX + 1], path[2 * AG_KEY_MAX + 256], host[AG_KEY_MAX + 1], domain[AG_KEY_MAX + 1];
    snprintf(key, sizeof key, "%s", job->key);
    job->result = AG_R_NOTFOUND;
    job->why[0] = '\0';
    if (!job_path(job, lc, key, path, sizeof path, host, domain))
        return;

    char tag[AG_KEY_MAX + 160];
    snprintf(tag, sizeof tag, "vks-agent %s peer uid=%u gid=%u pid=%d key=%s", ag_proto_name(job->proto),
             (unsigned)job->peer.uid, (unsigned)job->peer.gid, (int)job->peer.pid, key);
    struct vks_ctx ctx = { .domain = domain[0] ? domain : NULL, .destination = host[0] ? host : NULL,
                           .tag = tag };
    struct vks_err err;
    vks_secret user = VKS_SECRET_EMPTY, pw = VKS_SECRET_EMPTY;
    const unsigned char *uname = NULL;
    size_t ul = 0;
    vks_status st = job_user(job, m, path, &ctx, &user, &uname, &ul, &err);
    if (st == VKS_E_NOT_CACHED) {
        job->needs_pool = true;
        return;
    }
    if (st == VKS_OK && ul > 0 && memchr(uname, '\0', ul) == NULL) {
        char ubuf[256];
        if (ul < sizeof ubuf && !vks_has_control((const char *)uname, ul)) {
            memcpy(ubuf, uname, ul);
            ubuf[ul] = '\0';
            ctx.username = ubuf; /* the user name is not a secret; the password never goes here */
        }
        st = resolve_field(job, m, path, m->password_field, &ctx, NULL, &pw, &err);
        if (st == VKS_E_NOT_CACHED) { /* the pool goes on from here with the user name */
            job->user = user;
            job->have_user = m->username_field != NULL;
            if (!job->have_user)
                vks_secret_free(&user);
            job->needs_pool = true;
            return;
        }
    } else if (st == VKS_OK) {
        vks_secret_free(&user);
        set_temp(job, "the user name is empty or holds a NUL byte");
        return;
    }
    if (st != VKS_OK) {
        job->result = classify(st);
        snprintf(job->why, sizeof job->why, "%s: %s", vks_status_code(st), err.msg);
    } else if (job->proto == AG_PROTO_SOCKETMAP && memchr(uname, ':', ul) != NULL) {
        set_temp(job, "the user name contains ':' (Postfix would split it there)");
    } else if (memchr(pw.data, '\0', pw.len) != NULL) {
        set_temp(job, "the password holds a NUL byte");
    } else {
        int b = build_ok(job, uname, ul, &pw);
        if (b == 0)
            job->result = AG_R_OK;
        else
            set_temp(job, b == -2 ? "the credential holds a NUL, CR or LF byte, starts with '^' or is too long for Exim"
                                  : "the credential is too long for a reply slot");
    }
    vks_secret_free(&user);
    vks_secret_free(&pw);
}
