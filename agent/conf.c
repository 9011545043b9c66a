/*
 * vks-agent configuration: --config FILE (TOML) -> struct ag_conf. Every error is collected (not
 * only the first) and names "FILE:LINE: key: message". Unknown keys are errors (typos must not
 * silently drop a setting). Secrets are never written in the file: the Vault token and AppRole
 * secret_id are named by file (token_file, secret_id_file) and read into the arena.
 * Format and every key: docs/agent.md "Configuration".
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "vks_resolver.h"
#include "vks_toml.h"

#define CONF_FILE_MAX (1024 * 1024)

struct cerr {
    char *buf;
    size_t cap, len;
    int count;
    const char *file;
};

static void cerr_add(struct cerr *e, int line, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void cerr_add(struct cerr *e, int line, const char *key, const char *fmt, ...)
{
    e->count++;
    if (e->len + 1 >= e->cap)
        return;
    int w = snprintf(e->buf + e->len, e->cap - e->len, "%s:%d: %s: ", e->file, line, key);
    if (w < 0 || (size_t)w >= e->cap - e->len) {
        e->len = e->cap - 1;
        return;
    }
    e->len += (size_t)w;
    va_list ap;
    va_start(ap, fmt);
    w = vsnprintf(e->buf + e->len, e->cap - e->len, fmt, ap);
    va_end(ap);
    if (w < 0 || (size_t)w >= e->cap - e->len - 1) {
        e->len = e->cap - 1;
        return;
    }
    e->len += (size_t)w;
    e->buf[e->len++] = '\n';
    e->buf[e->len] = '\0';
}

/* A section: its node, its dotted name, the keys it accepts. */
struct sect {
    const struct vks_toml_node *t;
    const char *name;
    int line;
};

static void full_key(char *out, size_t n, const struct sect *s, const char *key)
{
    snprintf(out, n, "%s%s%s", s->name, s->name[0] ? "." : "", key);
}

static void check_known(struct cerr *e, const struct sect *s, const char *const *known)
{
    if (s->t == NULL)
        return;
    for (size_t i = 0; i < s->t->n; i++) {
        const struct vks_toml_node *m = &s->t->items[i];
        bool ok = false;
        for (size_t k = 0; known[k] != NULL && !ok; k++)
            ok = strcmp(known[k], m->key) == 0;
        if (!ok) {
            char fk[256];
            full_key(fk, sizeof fk, s, m->key);
            cerr_add(e, m->key_line ? m->key_line : m->line, fk, "unknown key");
        }
    }
}

static const struct vks_toml_node *get_typed(struct cerr *e, const struct sect *s, const char *key,
                                             enum vks_toml_type want, const char *want_name)
{
    const struct vks_toml_node *n = vks_toml_get(s->t, key);
    if (n == NULL)
        return NULL;
    if (n->type != want) {
        char fk[256];
        full_key(fk, sizeof fk, s, key);
        cerr_add(e, n->line, fk, "expected %s, got %s", want_name, vks_toml_type_name(n->type));
        return NULL;
    }
    return n;
}

static char *get_str(struct cerr *e, const struct sect *s, const char *key, bool required)
{
    const struct vks_toml_node *n = get_typed(e, s, key, VKS_TOML_STRING, "a string");
    char fk[256];
    full_key(fk, sizeof fk, s, key);
    if (n == NULL) {
        if (required && vks_toml_get(s->t, key) == NULL)
            cerr_add(e, s->line, fk, "is required");
        return NULL;
    }
    if (n->len == 0 || strlen(n->str) != n->len || vks_has_control(n->str, n->len)) {
        cerr_add(e, n->line, fk, "must be a non-empty string without control characters");
        return NULL;
    }
    char *r = strdup(n->str);
    if (r == NULL)
        cerr_add(e, n->line, fk, "out of memory");
    return r;
}

static void get_bool(struct cerr *e, const struct sect *s, const char *key, bool *out)
{
    const struct vks_toml_node *n = get_typed(e, s, key, VKS_TOML_BOOL, "a boolean");
    if (n != NULL)
        *out = n->bval;
}

static void get_int(struct cerr *e, const struct sect *s, const char *key, long long lo,
                    long long hi, long long *out)
{
    const struct vks_toml_node *n = get_typed(e, s, key, VKS_TOML_INTEGER, "an integer");
    if (n == NULL)
        return;
    if (n->ival < lo || n->ival > hi) {
        char fk[256];
        full_key(fk, sizeof fk, s, key);
        cerr_add(e, n->line, fk, "must be between %lld and %lld", lo, hi);
        return;
    }
    *out = n->ival;
}

/* A TOML value as a core field (the same parsers as vks.setup{} and the environment). */
static bool to_field(const struct vks_toml_node *n, struct vks_field *f)
{
    memset(f, 0, sizeof *f);
    f->name = n->key;
    switch (n->type) {
    case VKS_TOML_STRING:
        f->type = VKS_FT_STRING;
        f->str = n->str;
        f->len = n->len;
        return true;
    case VKS_TOML_INTEGER:
        f->type = VKS_FT_INTEGER;
        f->ival = n->ival;
        return true;
    case VKS_TOML_FLOAT:
        f->type = VKS_FT_NUMBER;
        f->dval = n->dval;
        return true;
    case VKS_TOML_BOOL:
        f->type = VKS_FT_BOOLEAN;
        f->bval = n->bval;
        return true;
    default:
        f->type = VKS_FT_OTHER;
        f->type_name = vks_toml_type_name(n->type);
        return true;
    }
}

static void get_duration(struct cerr *e, const struct sect *s, const char *key, long *out_ms)
{
    const struct vks_toml_node *n = vks_toml_get(s->t, key);
    if (n == NULL)
        return;
    char fk[256];
    full_key(fk, sizeof fk, s, key);
    struct vks_field f;
    to_field(n, &f);
    struct vks_err ve;
    vks_err_clear(&ve);
    long ms = 0;
    if (vks_parse_duration_ms(&f, fk, &ms, &ve) != VKS_OK) {
        cerr_add(e, n->line, fk, "%s", ve.msg);
        return;
    }
    if (ms <= 0) {
        cerr_add(e, n->line, fk, "must be more than 0");
        return;
    }
    *out_ms = ms;
}

/* Reads a small secret file (token, secret_id) into an arena slot: trailing white space dropped.
 * Refused when readable by others. */
static int read_secret_file(struct cerr *e, int line, const char *key, const char *path, vks_secret *out)
{
    int before = e->count;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        cerr_add(e, line, key, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        cerr_add(e, line, key, "%s is not a regular file", path);
        close(fd);
        return -1;
    }
    if (st.st_mode & S_IROTH) {
        cerr_add(e, line, key, "%s is readable by others (mode %03o): chmod o-r", path,
                 (unsigned)(st.st_mode & 0777));
        close(fd);
        return -1;
    }
    struct vks_err ve;
    if (vks_secret_alloc(VKS_SECRET_MAX, out, &ve) != VKS_OK) {
        cerr_add(e, line, key, "%s", ve.msg);
        close(fd);
        return -1;
    }
    size_t got = 0;
    for (;;) {
        ssize_t r = read(fd, out->data + got, out->cap - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            cerr_add(e, line, key, "cannot read %s: %s", path, strerror(errno));
            break;
        }
        if (r == 0)
            break;
        got += (size_t)r;
        if (got == out->cap) {
            cerr_add(e, line, key, "%s is larger than %d bytes", path, VKS_SECRET_MAX - 1);
            break;
        }
    }
    close(fd);
    while (got > 0 && isspace(out->data[got - 1]))
        got--;
    out->len = got;
    if (e->count > before || got == 0) {
        if (got == 0 && e->count == before)
            cerr_add(e, line, key, "%s is empty", path);
        vks_secret_free(out);
        return -1;
    }
    return 0;
}

static void parse_vault(struct cerr *e, const struct sect *s, struct ag_conf *c)
{
    vks_config_defaults(&c->vault);
    if (s->t == NULL) {
        cerr_add(e, 1, "vault", "section [vault] is required (address and authentication)");
        return;
    }
    int before = e->count;
    for (size_t i = 0; i < s->t->n; i++) {
        const struct vks_toml_node *m = &s->t->items[i];
        char fk[256];
        full_key(fk, sizeof fk, s, m->key);
        if (strcmp(m->key, "token") == 0 || strcmp(m->key, "secret_id") == 0) {
            cerr_add(e, m->line, fk, "secrets are not written in the config file: use %s_file",
                     m->key);
            continue;
        }
        if (strcmp(m->key, "token_file") == 0 || strcmp(m->key, "secret_id_file") == 0) {
            if (m->type != VKS_TOML_STRING || m->len == 0) {
                cerr_add(e, m->line, fk, "expected a file path");
                continue;
            }
        }
        if (strcmp(m->key, "token_file") == 0) {
            int pre = e->count;
            vks_secret tok = VKS_SECRET_EMPTY;
            if (read_secret_file(e, m->line, fk, m->str, &tok) != 0)
                continue;
            struct vks_field f = { .name = "token", .type = VKS_FT_STRING,
                                   .str = (const char *)tok.data, .len = tok.len };
            struct vks_err ve;
            vks_err_clear(&ve);
            if (vks_config_set(&c->vault, &f, &ve) != VKS_OK && e->count == pre)
                cerr_add(e, m->line, fk, "%s", ve.msg);
            vks_secret_free(&tok);
            continue;
        }
        struct vks_field f;
        to_field(m, &f);
        struct vks_err ve;
        vks_err_clear(&ve);
        if (vks_config_set(&c->vault, &f, &ve) != VKS_OK)
            cerr_add(e, m->line, fk, "%s", ve.msg);
    }
    if (e->count != before)
        return;
    struct vks_err ve;
    vks_err_clear(&ve);
    if (vks_config_finish(&c->vault, &ve) != VKS_OK) {
        cerr_add(e, s->line, "vault", "%s", ve.msg);
        return;
    }
    if (c->vault.vault.address == NULL)
        cerr_add(e, s->line, "vault.address", "is required");
    if (vks_config_check_files(&c->vault, &ve) != VKS_OK)
        cerr_add(e, s->line, "vault", "%s", ve.msg);
}

static void parse_cache(struct cerr *e, const struct sect *s, struct ag_conf *c)
{
    static const char *const known[] = { "ttl", "max_stale", "neg_ttl", "refresh", "capacity", NULL };
    vks_cache_config_defaults(&c->cache);
    check_known(e, s, known);
    const char *names[3] = { "ttl", "max_stale", "neg_ttl" };
    double *dst[3] = { &c->cache.ttl_s, &c->cache.max_stale_s, &c->cache.neg_ttl_s };
    for (int i = 0; i < 3; i++) {
        const struct vks_toml_node *n = vks_toml_get(s->t, names[i]);
        if (n == NULL)
            continue;
        char fk[64];
        full_key(fk, sizeof fk, s, names[i]);
        struct vks_field f;
        to_field(n, &f);
        struct vks_err ve;
        long ms = 0;
        if (vks_parse_duration_ms(&f, fk, &ms, &ve) != VKS_OK)
            cerr_add(e, n->line, fk, "%s", ve.msg);
        else
            *dst[i] = (double)ms / 1000.0;
    }
    const struct vks_toml_node *r = vks_toml_get(s->t, "refresh");
    if (r != NULL) {
        double v = r->type == VKS_TOML_FLOAT ? r->dval : r->type == VKS_TOML_INTEGER ? (double)r->ival : -1;
        if (!(v > 0 && v <= 1))
            cerr_add(e, r->line, "cache.refresh", "must be a number in (0, 1]");
        else
            c->cache.refresh_fraction = v;
    }
    long long cap = (long long)c->cache.capacity;
    get_int(e, s, "capacity", 0, 10000000, &cap);
    c->cache.capacity = (size_t)cap;
}

static void parse_audit(struct cerr *e, const struct sect *s, struct ag_conf *c)
{
    static const char *const known[] = { "file", "key_file", "syslog", "syslog_socket", "stderr",
                                         "mode", "on_failure", "required", "require_key", "queue",
                                         NULL };
    vks_audit_config_init(&c->audit);
    check_known(e, s, known);
    c->audit_file = get_str(e, s, "file", false);
    c->audit_key_file = get_str(e, s, "key_file", false);
    c->audit_syslog_socket = get_str(e, s, "syslog_socket", false);
    c->audit.file = c->audit_file;
    c->audit.key_file = c->audit_key_file;
    c->audit.syslog_socket = c->audit_syslog_socket;
    get_bool(e, s, "syslog", &c->audit.syslog);
    get_bool(e, s, "stderr", &c->audit.stderr_sink);
    get_bool(e, s, "required", &c->audit.required);
    get_bool(e, s, "require_key", &c->audit.require_key);
    long long q = 0;
    get_int(e, s, "queue", 1, 1 << 20, &q);
    c->audit.queue_size = (size_t)q;
    const struct vks_toml_node *m = get_typed(e, s, "mode", VKS_TOML_STRING, "a string");
    if (m != NULL) {
        if (strcmp(m->str, "sync") == 0)
            c->audit.mode = VKS_AUDIT_SYNC;
        else if (strcmp(m->str, "fsync") == 0)
            c->audit.mode = VKS_AUDIT_FSYNC;
        else if (strcmp(m->str, "async") == 0)
            c->audit.mode = VKS_AUDIT_ASYNC;
        else
            cerr_add(e, m->line, "audit.mode", "must be \"sync\", \"fsync\" or \"async\"");
    }
    const struct vks_toml_node *o = get_typed(e, s, "on_failure", VKS_TOML_STRING, "a string");
    if (o != NULL) {
        if (strcmp(o->str, "deny") == 0)
            c->audit.on_failure = VKS_AUDIT_DENY;
        else if (strcmp(o->str, "allow") == 0)
            c->audit.on_failure = VKS_AUDIT_ALLOW;
        else
            cerr_add(e, o->line, "audit.on_failure", "must be \"deny\" or \"allow\"");
    }
}

static void parse_agent(struct cerr *e, const struct sect *s, struct ag_conf *c)
{
    static const char *const known[] = { "workers", "max_connections", "max_request",
                                         "idle_timeout", "read_timeout", "write_timeout",
                                         "drain_timeout", "inline_hits", NULL };
    check_known(e, s, known);
    long long v = c->workers;
    get_int(e, s, "workers", 1, 64, &v);
    c->workers = (int)v;
    get_bool(e, s, "inline_hits", &c->inline_hits);
    v = (long long)c->max_connections;
    get_int(e, s, "max_connections", 1, 1000000, &v);
    c->max_connections = (size_t)v;
    v = (long long)c->max_request;
    get_int(e, s, "max_request", 64, 1024 * 1024, &v);
    c->max_request = (size_t)v;
    get_duration(e, s, "idle_timeout", &c->idle_timeout_ms);
    get_duration(e, s, "read_timeout", &c->read_timeout_ms);
    get_duration(e, s, "write_timeout", &c->write_timeout_ms);
    get_duration(e, s, "drain_timeout", &c->drain_timeout_ms);
}

static void parse_metrics(struct cerr *e, const struct sect *s, struct ag_conf *c)
{
    static const char *const known[] = { "listen", NULL };
    check_known(e, s, known);
    char *l = get_str(e, s, "listen", false);
    if (l == NULL)
        return;
    const struct vks_toml_node *n = vks_toml_get(s->t, "listen");
    char *colon = strrchr(l, ':');
    char *end = NULL;
    long port = colon ? strtol(colon + 1, &end, 10) : -1;
    if (colon == NULL || end == colon + 1 || *end != '\0' || port < 1 || port > 65535) {
        cerr_add(e, n->line, "metrics.listen", "expected \"127.0.0.1:PORT\"");
        free(l);
        return;
    }
    *colon = '\0';
    if (strncmp(l, "127.", 4) != 0 && strcmp(l, "localhost") != 0 && strcmp(l, "::1") != 0 &&
        strcmp(l, "[::1]") != 0) {
        cerr_add(e, n->line, "metrics.listen", "must be a loopback address (the metrics listener is local only)");
        free(l);
        return;
    }
    if (strcmp(l, "[::1]") == 0)
        memmove(l, "::1", 4);
    c->metrics_host = l;
    c->metrics_port = (int)port;
}

static void parse_ids(struct cerr *e, const struct sect *s, const char *key, bool groups,
                      struct ag_listener_conf *lc)
{
    const struct vks_toml_node *a = get_typed(e, s, key, VKS_TOML_ARRAY, "an array");
    if (a == NULL)
        return;
    char fk[128];
    full_key(fk, sizeof fk, s, key);
    unsigned *ids = calloc(a->n ? a->n : 1, sizeof *ids);
    size_t k = 0;
    for (size_t i = 0; ids != NULL && i < a->n; i++) {
        const struct vks_toml_node *m = &a->items[i];
        if (m->type == VKS_TOML_INTEGER && m->ival >= 0 && m->ival < 0x7fffffff) {
            ids[k++] = (unsigned)m->ival;
        } else if (m->type == VKS_TOML_STRING) {
            if (groups) {
                struct group *g = getgrnam(m->str);
                if (g == NULL)
                    cerr_add(e, m->line, fk, "no such group \"%s\"", m->str);
                else
                    ids[k++] = g->gr_gid;
            } else {
                struct passwd *p = getpwnam(m->str);
                if (p == NULL)
                    cerr_add(e, m->line, fk, "no such user \"%s\"", m->str);
                else
                    ids[k++] = p->pw_uid;
            }
        } else {
            cerr_add(e, m->line, fk, "entries must be names or numeric ids");
        }
    }
    if (groups) {
        lc->allow_gids = (gid_t *)ids;
        lc->n_gids = k;
    } else {
        lc->allow_uids = (uid_t *)ids;
        lc->n_uids = k;
    }
}

static bool template_ok(const char *t, bool socketmap, char *bad, size_t n)
{
    static const char *const names[] = { "key", "host", "port", "sender", "domain", NULL };
    for (const char *p = t; *p; p++) {
        if (*p == '}') {
            snprintf(bad, n, "unbalanced '}'");
            return false;
        }
        if (*p != '{')
            continue;
        const char *q = strchr(p, '}');
        if (q == NULL) {
            snprintf(bad, n, "unbalanced '{'");
            return false;
        }
        bool ok = false;
        for (size_t i = 0; names[i] && !ok; i++)
            ok = strlen(names[i]) == (size_t)(q - p - 1) && strncmp(names[i], p + 1, (size_t)(q - p - 1)) == 0;
        if (ok && !socketmap && (strncmp(p, "{sender}", 8) == 0 || strncmp(p, "{domain}", 8) == 0 ||
                                 strncmp(p, "{port}", 6) == 0))
            ok = false;
        if (!ok) {
            snprintf(bad, n, "unknown placeholder %.*s", (int)(q - p + 1), p);
            return false;
        }
        p = q;
    }
    return true;
}

static void parse_cred(struct cerr *e, const struct sect *parent, struct ag_listener_conf *lc)
{
    static const char *const known[] = { "mount", "path", "username_field", "username", "key",
                                         "namespace", "kv_version", NULL };
    char name[64];
    snprintf(name, sizeof name, "%s.credential", parent->name);
    const struct vks_toml_node *t = get_typed(e, parent, "credential", VKS_TOML_TABLE, "a table");
    struct sect s = { t, name, t ? t->line : parent->line };
    if (t == NULL) {
        if (vks_toml_get(parent->t, "credential") == NULL)
            cerr_add(e, parent->line, name, "is required (where the credentials are in Vault)");
        return;
    }
    check_known(e, &s, known);
    char fk_user[96], fk_path[96], fk_kv[96];
    full_key(fk_user, sizeof fk_user, &s, "username");
    full_key(fk_path, sizeof fk_path, &s, "path");
    full_key(fk_kv, sizeof fk_kv, &s, "kv_version");
    struct ag_cred_map *m = &lc->cred;
    m->mount = get_str(e, &s, "mount", true);
    m->path = get_str(e, &s, "path", true);
    m->username_field = get_str(e, &s, "username_field", false);
    m->username = get_str(e, &s, "username", false);
    m->password_field = get_str(e, &s, "key", false);
    m->namespace_ = get_str(e, &s, "namespace", false);
    if (m->password_field == NULL && vks_toml_get(t, "key") == NULL)
        m->password_field = strdup("key");
    if ((m->username_field == NULL) == (m->username == NULL) &&
        vks_toml_get(t, "username_field") == NULL && vks_toml_get(t, "username") == NULL)
        cerr_add(e, s.line, name, "needs username_field (a field of the secret) or username (fixed)");
    else if (m->username_field != NULL && m->username != NULL)
        cerr_add(e, vks_toml_get(t, "username")->line, fk_user,
                 "give either username_field or username, not both");
    if (m->username != NULL && strchr(m->username, ':') != NULL && lc->proto == AG_PROTO_SOCKETMAP)
        cerr_add(e, vks_toml_get(t, "username")->line, fk_user,
                 "must not contain ':' (Postfix splits user:password at the first ':')");
    char bad[96];
    if (m->path != NULL && !template_ok(m->path, lc->proto == AG_PROTO_SOCKETMAP, bad, sizeof bad))
        cerr_add(e, vks_toml_get(t, "path")->line, fk_path, "%s", bad);
    m->kv_version = VKS_KV_UNSET;
    const struct vks_toml_node *kv = vks_toml_get(t, "kv_version");
    if (kv != NULL) {
        struct vks_field f;
        to_field(kv, &f);
        struct vks_err ve;
        if (vks_kv_version_parse(&f, &m->kv_version, &ve) != VKS_OK)
            cerr_add(e, kv->line, fk_kv, "%s", ve.msg);
    }
}

static void parse_socket(struct cerr *e, const struct sect *sp, struct ag_listener_conf *lc);

static void parse_listener(struct cerr *e, const struct vks_toml_node *root, enum ag_proto p,
                           struct ag_listener_conf *lc)
{
    static const char *const known_sm[] = { "socket", "mode", "group", "allow_users", "allow_groups",
                                            "map", "sender_dependent", "credential", NULL };
    static const char *const known_ex[] = { "socket", "mode", "group", "allow_users", "allow_groups",
                                            "credential", NULL };
    const char *name = ag_proto_name(p);
    const struct vks_toml_node *t = vks_toml_get(root, name);
    lc->proto = p;
    lc->mode = 0660;
    if (t == NULL)
        return;
    struct sect s = { t, name, t->line };
    if (t->type != VKS_TOML_TABLE) {
        cerr_add(e, t->line, name, "expected a table");
        return;
    }
    lc->enabled = true;
    check_known(e, &s, p == AG_PROTO_SOCKETMAP ? known_sm : known_ex);
    parse_socket(e, &s, lc);
    if (p == AG_PROTO_SOCKETMAP) {
        lc->map = get_str(e, &s, "map", true);
        if (lc->map != NULL && strpbrk(lc->map, " :") != NULL)
            cerr_add(e, vks_toml_get(t, "map")->line, "socketmap.map", "must not contain ' ' or ':'");
        get_bool(e, &s, "sender_dependent", &lc->sender_dependent);
    }
    lc->forms[AG_FORM_HOST] = lc->forms[AG_FORM_NEXTHOP] = true;
    lc->forms[AG_FORM_SENDER] = lc->sender_dependent;
    parse_cred(e, &s, lc);
}

/* socket, mode, group, allow_users, allow_groups of a unix listener section. */
static void parse_socket(struct cerr *e, const struct sect *sp, struct ag_listener_conf *lc)
{
    struct sect s = *sp;
    const struct vks_toml_node *t = s.t;
    const char *name = s.name;
    char fk_socket[64], fk_mode[64], fk_group[64];
    full_key(fk_socket, sizeof fk_socket, &s, "socket");
    full_key(fk_mode, sizeof fk_mode, &s, "mode");
    full_key(fk_group, sizeof fk_group, &s, "group");
    lc->socket = get_str(e, &s, "socket", true);
    if (lc->socket != NULL && (lc->socket[0] != '/' || strlen(lc->socket) > 100))
        cerr_add(e, vks_toml_get(t, "socket")->line, fk_socket,
                 "must be an absolute path of at most 100 bytes");
    const struct vks_toml_node *m = vks_toml_get(t, "mode");
    if (m != NULL) {
        char *end = NULL;
        long v = m->type == VKS_TOML_STRING ? strtol(m->str, &end, 8)
                 : m->type == VKS_TOML_INTEGER ? (long)m->ival : -1;
        if ((m->type == VKS_TOML_STRING && (end == m->str || *end != '\0')) || v < 0 || v > 0777 ||
            (v & 0007))
            cerr_add(e, m->line, fk_mode, "expected an octal mode string such as \"0660\", with no "
                                         "access for others");
        else
            lc->mode = (unsigned)v;
    }
    const struct vks_toml_node *g = get_typed(e, &s, "group", VKS_TOML_STRING, "a group name");
    if (g != NULL) {
        struct group *gr = getgrnam(g->str);
        if (gr == NULL)
            cerr_add(e, g->line, fk_group, "no such group \"%s\"", g->str);
        else {
            lc->group = gr->gr_gid;
            lc->has_group = true;
        }
    }
    parse_ids(e, &s, "allow_users", false, lc);
    parse_ids(e, &s, "allow_groups", true, lc);
    if (lc->n_uids + lc->n_gids == 0 && vks_toml_get(t, "allow_users") == NULL &&
        vks_toml_get(t, "allow_groups") == NULL)
        cerr_add(e, t->line, name, "allow_users or allow_groups is required (which peers may ask)");
}

static char **str_array(struct cerr *e, const struct sect *s, const char *key, size_t *n, bool allow_empty)
{
    *n = 0;
    const struct vks_toml_node *a = get_typed(e, s, key, VKS_TOML_ARRAY, "an array of strings");
    if (a == NULL)
        return NULL;
    char fk[128];
    full_key(fk, sizeof fk, s, key);
    char **out = calloc(a->n + 1, sizeof *out);
    for (size_t i = 0; out != NULL && i < a->n; i++) {
        const struct vks_toml_node *m = &a->items[i];
        if (m->type != VKS_TOML_STRING || strlen(m->str) != m->len || vks_has_control(m->str, m->len) ||
            (!allow_empty && m->len == 0)) {
            cerr_add(e, m->line, fk, "entry %zu must be a%s string without control characters", i + 1,
                     allow_empty ? "" : " non-empty");
            continue;
        }
        out[(*n)++] = strdup(m->str);
    }
    return out;
}

static void free_str_array(char **a, size_t n)
{
    for (size_t i = 0; a != NULL && i < n; i++)
        free(a[i]);
    free(a);
}

static int hexval(int ch)
{
    return ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
           : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
}

static void parse_api_client(struct cerr *e, const struct vks_toml_node *t, size_t idx, struct ag_api_client *cl)
{
    static const char *const known[] = { "name", "token_sha256", "mounts", "path_prefixes", "destination",
                                         "domain", NULL };
    char name[48];
    snprintf(name, sizeof name, "vault_api.client[%zu]", idx + 1);
    struct sect s = { t, name, t->line };
    check_known(e, &s, known);
    cl->name = get_str(e, &s, "name", true);
    const struct vks_toml_node *h = get_typed(e, &s, "token_sha256", VKS_TOML_STRING, "a string");
    char fk[96];
    full_key(fk, sizeof fk, &s, "token_sha256");
    if (h == NULL && vks_toml_get(t, "token_sha256") == NULL)
        cerr_add(e, t->line, fk, "is required (sha256 of the client's token, 64 hex digits)");
    else if (h != NULL) {
        bool ok = h->len == 64;
        for (size_t i = 0; ok && i < 32; i++) {
            int hi = hexval(h->str[2 * i]), lo = hexval(h->str[2 * i + 1]);
            ok = hi >= 0 && lo >= 0;
            cl->token_sha256[i] = (unsigned char)(hi * 16 + lo);
        }
        if (!ok)
            cerr_add(e, h->line, fk, "must be 64 hex digits (printf %%s TOKEN | sha256sum)");
    }
    cl->mounts = str_array(e, &s, "mounts", &cl->n_mounts, false);
    if (cl->n_mounts == 0)
        cerr_add(e, t->line, name, "mounts is required (the mounts this client may read)");
    cl->prefixes = str_array(e, &s, "path_prefixes", &cl->n_prefixes, true);
    if (cl->n_prefixes == 0)
        cerr_add(e, t->line, name, "path_prefixes is required ([\"\"] for every path of the mounts)");
    /* optional: the destination / sender domain this token stands for (restrictions, audit) */
    cl->destination = get_str(e, &s, "destination", false);
    cl->domain = get_str(e, &s, "domain", false);
}

/* Classifies the host part of a listen address: 1 a loopback IP literal (127.0.0.0/8, ::1),
 * 2 "localhost" (a name: loopback only as far as /etc/hosts says), 0 anything else. */
static int loopback_kind(const char *h)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, h, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127 ? 1 : 0;
    if (inet_pton(AF_INET6, h, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6) ? 1 : 0;
    return strcmp(h, "localhost") == 0 ? 2 : 0;
}

/* [vault_api] listen, tls, tls_cert, tls_key. The TCP listener speaks HTTPS (tls_cert + tls_key),
 * or plain HTTP only when asked for with tls = false AND bound to a loopback IP literal. */
static void parse_api_listen(struct cerr *e, const struct sect *s, struct ag_api_conf *api)
{
    const struct vks_toml_node *t = s->t, *ln = vks_toml_get(t, "listen"), *tn = vks_toml_get(t, "tls");
    bool tls = true;
    get_bool(e, s, "tls", &tls);
    api->plain_http = !tls;
    api->tls_cert = get_str(e, s, "tls_cert", false);
    api->tls_key = get_str(e, s, "tls_key", false);
    if ((api->tls_cert == NULL) != (api->tls_key == NULL))
        cerr_add(e, t->line, "vault_api", "tls_cert and tls_key go together");
    for (int i = 0; i < 2; i++) {
        const char *f = i == 0 ? api->tls_cert : api->tls_key;
        if (f != NULL && access(f, R_OK) != 0)
            cerr_add(e, vks_toml_get(t, i == 0 ? "tls_cert" : "tls_key")->line,
                     i == 0 ? "vault_api.tls_cert" : "vault_api.tls_key", "cannot read %s: %s", f, strerror(errno));
    }
    if (!tls && api->tls_cert != NULL)
        cerr_add(e, tn->line, "vault_api.tls", "tls = false contradicts tls_cert/tls_key: choose one");
    char *l = get_str(e, s, "listen", false);
    if (l == NULL) {
        if (tn != NULL && ln == NULL)
            cerr_add(e, tn->line, "vault_api.tls", "applies to listen, which is not set");
        return;
    }
    char *colon = strrchr(l, ':'), *end = NULL, *h = l;
    long port = colon ? strtol(colon + 1, &end, 10) : -1;
    if (colon != NULL)
        *colon = '\0';
    size_t hl = strlen(h);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') { /* [::1]:PORT */
        h[hl - 1] = '\0';
        h++;
    }
    int kind = colon != NULL && end != colon + 1 && *end == '\0' && port >= 1 && port <= 65535 ? loopback_kind(h) : 0;
    if (kind == 0)
        cerr_add(e, ln->line, "vault_api.listen", "expected \"127.0.0.1:PORT\" or \"[::1]:PORT\" (loopback only)");
    else if (!tls && kind != 1)
        cerr_add(e, ln->line, "vault_api.listen",
                 "plain HTTP (tls = false) is served only on a loopback IP address (127.0.0.0/8 or ::1), not a name");
    else if (tls && api->tls_cert == NULL)
        cerr_add(e, ln->line, "vault_api.listen",
                 "needs tls_cert and tls_key (HTTPS), or tls = false for plain HTTP on a loopback address");
    else {
        api->host = strdup(h);
        api->port = (int)port;
    }
    free(l);
}

static void parse_api(struct cerr *e, const struct vks_toml_node *root, struct ag_api_conf *api)
{
    static const char *const known[] = { "listen", "socket", "mode", "group", "fields", "client",
                                         "tls", "tls_cert", "tls_key", NULL };
    const struct vks_toml_node *t = vks_toml_get(root, "vault_api");
    api->mode = 0660;
    if (t == NULL)
        return;
    if (t->type != VKS_TOML_TABLE) {
        cerr_add(e, t->line, "vault_api", "expected a table");
        return;
    }
    struct sect s = { t, "vault_api", t->line };
    api->enabled = true;
    check_known(e, &s, known);
    parse_api_listen(e, &s, api);
    api->socket = get_str(e, &s, "socket", false);
    if (api->socket != NULL && (api->socket[0] != '/' || strlen(api->socket) > 100))
        cerr_add(e, vks_toml_get(t, "socket")->line, "vault_api.socket", "must be an absolute path of at most 100 bytes");
    if (api->host == NULL && api->socket == NULL && vks_toml_get(t, "listen") == NULL && vks_toml_get(t, "socket") == NULL)
        cerr_add(e, t->line, "vault_api", "needs listen and/or socket");
    const struct vks_toml_node *m = get_typed(e, &s, "mode", VKS_TOML_STRING, "an octal mode string");
    if (m != NULL) {
        char *end = NULL;
        long v = strtol(m->str, &end, 8);
        if (end == m->str || *end != '\0' || v < 0 || v > 0777 || (v & 7))
            cerr_add(e, m->line, "vault_api.mode", "expected an octal mode such as \"0660\", no access for others");
        else
            api->mode = (unsigned)v;
    }
    const struct vks_toml_node *g = get_typed(e, &s, "group", VKS_TOML_STRING, "a group name");
    if (g != NULL) {
        struct group *gr = getgrnam(g->str);
        if (gr == NULL)
            cerr_add(e, g->line, "vault_api.group", "no such group \"%s\"", g->str);
        else {
            api->group = gr->gr_gid;
            api->has_group = true;
        }
    }
    api->fields = str_array(e, &s, "fields", &api->n_fields, false);
    if (vks_toml_get(t, "fields") == NULL) {
        api->fields = calloc(2, sizeof *api->fields);
        if (api->fields != NULL) {
            api->fields[0] = strdup("key");
            api->n_fields = 1;
        }
    }
    const struct vks_toml_node *cl = get_typed(e, &s, "client", VKS_TOML_ARRAY, "an array of tables ([[vault_api.client]])");
    if (cl == NULL || cl->n == 0) {
        if (vks_toml_get(t, "client") == NULL)
            cerr_add(e, t->line, "vault_api.client", "at least one [[vault_api.client]] is required");
        return;
    }
    api->clients = calloc(cl->n, sizeof *api->clients);
    for (size_t i = 0; api->clients != NULL && i < cl->n; i++) {
        if (cl->items[i].type != VKS_TOML_TABLE) {
            cerr_add(e, cl->items[i].line, "vault_api.client", "entries must be tables");
            continue;
        }
        parse_api_client(e, &cl->items[i], i, &api->clients[api->n_clients++]);
    }
}

static void api_clear(struct ag_api_conf *api)
{
    free(api->tls_cert);
    free(api->tls_key);
    free(api->host);
    free(api->socket);
    free_str_array(api->fields, api->n_fields);
    for (size_t i = 0; i < api->n_clients; i++) {
        free(api->clients[i].name);
        free(api->clients[i].destination);
        free(api->clients[i].domain);
        free_str_array(api->clients[i].mounts, api->clients[i].n_mounts);
        free_str_array(api->clients[i].prefixes, api->clients[i].n_prefixes);
    }
    free(api->clients);
}

/* [inbound] and its [inbound.sasl] / [inbound.policy] listeners (docs/inbound.md). */
static void parse_inbound_listener(struct cerr *e, const struct sect *in, const char *sub, const char *name,
                                   struct ag_listener_conf *lc)
{
    static const char *const known[] = { "socket", "mode", "group", "allow_users", "allow_groups", NULL };
    const struct vks_toml_node *t = vks_toml_get(in->t, sub);
    lc->mode = 0660;
    if (t == NULL)
        return;
    if (t->type != VKS_TOML_TABLE) {
        cerr_add(e, t->line, name, "expected a table");
        return;
    }
    struct sect s = { t, name, t->line };
    lc->enabled = true;
    check_known(e, &s, known);
    parse_socket(e, &s, lc);
}

static void parse_inbound(struct cerr *e, const struct vks_toml_node *root, struct ag_inbound_conf *in)
{
    static const char *const known[] = { "mount", "prefix", "cache_ttl", "max_failures", "max_failures_per_address",
                                         "lockout", "failure_window", "workers", "max_connections",
                                         "idle_timeout", "read_timeout", "verify_timeout", "http_verify", "sasl",
                                         "policy", NULL };
    const struct vks_toml_node *t = vks_toml_get(root, "inbound");
    in->cache_ttl_ms = -1;
    in->workers = 2;
    in->max_connections = 256;
    in->idle_timeout_ms = 3600000;
    in->read_timeout_ms = 10000;
    in->verify_timeout_ms = 15000;
    if (t == NULL)
        return;
    if (t->type != VKS_TOML_TABLE) {
        cerr_add(e, t->line, "inbound", "expected a table");
        return;
    }
    struct sect s = { t, "inbound", t->line };
    in->enabled = true;
    check_known(e, &s, known);
    in->mount = get_str(e, &s, "mount", false);
    in->prefix = get_str(e, &s, "prefix", false);
    const struct vks_toml_node *ttl = vks_toml_get(t, "cache_ttl");
    if (ttl != NULL && ttl->type == VKS_TOML_INTEGER && ttl->ival == 0)
        in->cache_ttl_ms = 0; /* no cache */
    else
        get_duration(e, &s, "cache_ttl", &in->cache_ttl_ms);
    get_duration(e, &s, "lockout", &in->lockout_ms);
    get_duration(e, &s, "failure_window", &in->window_ms);
    get_int(e, &s, "max_failures", 1, 1000000, &in->max_failures);
    get_int(e, &s, "max_failures_per_address", 1, 1000000, &in->max_failures_address);
    get_int(e, &s, "workers", 1, 64, &in->workers);
    get_int(e, &s, "max_connections", 1, 100000, &in->max_connections);
    get_duration(e, &s, "idle_timeout", &in->idle_timeout_ms);
    get_duration(e, &s, "read_timeout", &in->read_timeout_ms);
    get_duration(e, &s, "verify_timeout", &in->verify_timeout_ms);
    get_bool(e, &s, "http_verify", &in->http_verify);
    parse_inbound_listener(e, &s, "sasl", "inbound.sasl", &in->sasl);
    parse_inbound_listener(e, &s, "policy", "inbound.policy", &in->policy);
    if (!in->sasl.enabled && !in->policy.enabled && !in->http_verify)
        cerr_add(e, t->line, "inbound", "needs [inbound.sasl], [inbound.policy] and/or http_verify = true");
}

static void parse_root(struct cerr *e, const struct vks_toml_node *root, struct ag_conf *c)
{
    static const char *const known[] = { "vault", "cache", "audit", "agent", "metrics",
                                         "socketmap", "exim", "vault_api", "inbound", NULL };
    struct sect r = { root, "", 1 };
    check_known(e, &r, known);
    const char *secs[] = { "vault", "cache", "audit", "agent", "metrics" };
    struct sect s[5];
    for (int i = 0; i < 5; i++) {
        const struct vks_toml_node *t = vks_toml_get(root, secs[i]);
        if (t != NULL && t->type != VKS_TOML_TABLE) {
            cerr_add(e, t->line, secs[i], "expected a table");
            t = NULL;
        }
        s[i] = (struct sect){ t, secs[i], t ? t->line : 1 };
    }
    parse_vault(e, &s[0], c);
    parse_cache(e, &s[1], c);
    parse_audit(e, &s[2], c);
    parse_agent(e, &s[3], c);
    parse_metrics(e, &s[4], c);
    for (int p = 0; p < AG_LISTENER_COUNT; p++)
        parse_listener(e, root, (enum ag_proto)p, &c->lst[p]);
    parse_api(e, root, &c->api);
    parse_inbound(e, root, &c->inbound);
    if (!c->lst[AG_PROTO_SOCKETMAP].enabled && !c->lst[AG_PROTO_EXIM].enabled && !c->api.enabled &&
        !c->inbound.enabled)
        cerr_add(e, 1, "socketmap", "no listener configured: add [socketmap], [exim], [vault_api] and/or [inbound]");
    if (c->inbound.http_verify && !c->api.enabled)
        cerr_add(e, 1, "inbound.http_verify", "needs the [vault_api] listener");
    if (c->lst[0].enabled && c->lst[1].enabled && c->lst[0].socket && c->lst[1].socket &&
        strcmp(c->lst[0].socket, c->lst[1].socket) == 0)
        cerr_add(e, 1, "exim.socket", "is the same path as socketmap.socket");
}

static char *read_conf_file(const char *file, size_t *len, struct cerr *e)
{
    int fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        cerr_add(e, 0, "config", "cannot open: %s", strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > CONF_FILE_MAX) {
        cerr_add(e, 0, "config", "not a regular file of at most %d bytes", CONF_FILE_MAX);
        close(fd);
        return NULL;
    }
    char *buf = malloc((size_t)st.st_size + 1);
    size_t got = 0;
    while (buf != NULL && got < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    if (buf == NULL || got != (size_t)st.st_size) {
        cerr_add(e, 0, "config", "cannot read");
        free(buf);
        return NULL;
    }
    buf[got] = '\0';
    *len = got;
    return buf;
}

static void listener_clear(struct ag_listener_conf *lc)
{
    free(lc->socket);
    free(lc->allow_uids);
    free(lc->allow_gids);
    free(lc->map);
    free(lc->cred.mount);
    free(lc->cred.path);
    free(lc->cred.username_field);
    free(lc->cred.username);
    free(lc->cred.password_field);
    free(lc->cred.namespace_);
}

static void conf_free(struct ag_conf *c)
{
    if (c == NULL)
        return;
    free(c->file);
    vks_config_clear(&c->vault);
    free(c->audit_file);
    free(c->audit_key_file);
    free(c->audit_syslog_socket);
    free(c->metrics_host);
    for (int i = 0; i < AG_LISTENER_COUNT; i++)
        listener_clear(&c->lst[i]);
    api_clear(&c->api);
    free(c->inbound.mount);
    free(c->inbound.prefix);
    listener_clear(&c->inbound.sasl);
    listener_clear(&c->inbound.policy);
    free(c);
}

struct ag_conf *ag_conf_load(const char *file, char *errbuf, size_t errlen)
{
    struct cerr e = { errbuf, errlen, 0, 0, file };
    if (errlen > 0)
        errbuf[0] = '\0';
    struct ag_conf *c = calloc(1, sizeof *c);
    if (c == NULL) {
        snprintf(errbuf, errlen, "%s: out of memory\n", file);
        return NULL;
    }
    atomic_init(&c->refs, 1);
    c->file = strdup(file);
    c->workers = 4;
    c->inline_hits = true;
    c->max_connections = 1024;
    c->max_request = 64 * 1024;
    c->idle_timeout_ms = 60000;
    c->read_timeout_ms = 10000;
    c->write_timeout_ms = 10000;
    c->drain_timeout_ms = 10000;
    vks_config_defaults(&c->vault);
    size_t len = 0;
    char *text = read_conf_file(file, &len, &e);
    if (text != NULL) {
        struct vks_toml_node *root = NULL;
        char perr[512];
        if (vks_toml_parse(text, len, file, &root, perr, sizeof perr) != 0) {
            e.count++;
            snprintf(errbuf, errlen, "%s\n", perr);
        } else {
            parse_root(&e, root, c);
        }
        vks_toml_free(root);
        free(text);
    }
    if (e.count > 0) {
        conf_free(c);
        return NULL;
    }
    return c;
}

struct ag_conf *ag_conf_ref(struct ag_conf *c)
{
    if (c != NULL)
        atomic_fetch_add(&c->refs, 1);
    return c;
}

void ag_conf_unref(struct ag_conf *c)
{
    if (c != NULL && atomic_fetch_sub(&c->refs, 1) == 1)
        conf_free(c);
}

bool ag_listener_conf_socket_differs(const struct ag_listener_conf *a, const struct ag_listener_conf *b)
{
    if (a->enabled != b->enabled)
        return true;
    if (!a->enabled)
        return false;
    return strcmp(a->socket, b->socket) != 0 || a->mode != b->mode || a->has_group != b->has_group ||
           (a->has_group && a->group != b->group);
}

int ag_conf_apply_core(const struct ag_conf *c, const struct ag_conf *prev, char *err, size_t errlen)
{
    struct vks_err ve;
    vks_err_clear(&ve);
    if (vks_secmem_init(&c->vault.secmem, &ve) != VKS_OK && prev == NULL) {
        snprintf(err, errlen, "%s: vault: %s", c->file, ve.msg);
        return -1;
    }
    if (vks_audit_configure(&c->audit, &ve) != VKS_OK) {
        snprintf(err, errlen, "%s: audit: %s", c->file, ve.msg);
        return -1;
    }
    if (vks_cache_configure(&c->cache, &ve) != VKS_OK) {
        snprintf(err, errlen, "%s: cache: %s", c->file, ve.msg);
        if (prev != NULL)
            vks_audit_configure(&prev->audit, NULL);
        return -1;
    }
    bool changed = false;
    if (vks_resolver_setup(&c->vault, &changed, &ve) != VKS_OK) {
        snprintf(err, errlen, "%s: vault: %s", c->file, ve.msg);
        if (prev != NULL) {
            vks_audit_configure(&prev->audit, NULL);
            vks_cache_configure(&prev->cache, NULL);
        }
        return -1;
    }
    return 0;
}
