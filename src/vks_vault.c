/*
 * vks_vault: Vault KV reads, KV version detection, token/AppRole auth with renewal
 * (contract: vks_vault.h; design: docs/internals/vault.md).
 */
#include "vks_vault.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <pwd.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "vks_file.h"
#include "vks_fork.h"
#include "vks_http.h"
#include "vks_json.h"

#define URL_CAP     4096
#define ORIGIN_CAP  1024
#define DEFAULT_ADDR "https://127.0.0.1:8200"

struct mount_entry {
    char *key;                 /* origin \n namespace \n mount */
    int version;
    struct mount_entry *next;
};

/* Accessors of per-request tokens (keysource vault_token), keyed by an HMAC of the token under a
 * per-client random key, so the table holds no token and no plain hash of one. */
#define ACC_MAX 64
struct acc_entry {
    unsigned char mac[32];
    char accessor[64];
};

struct vks_vault {
    struct vks_vault_config cfg;   /* deep copy; secrets in arena slots */
    char origin[ORIGIN_CAP];
    struct vks_http *http;

    pthread_mutex_t auth_lock;
    pthread_cond_t auth_cv;
    vks_secret token;              /* (secret) current client token                     */
    char accessor[64];
    bool looked_up;                /* lookup-self done for a static token                */
    int64_t next_lookup_try_ms;    /* after a transport failure of lookup-self           */
    bool busy;                     /* a login or renewal is in flight                    */
    bool invalid;                  /* token known bad: log in again before the next use  */
    int64_t obtained_ms;           /* auth clock when the TTL below was learnt           */
    int64_t ttl_s;                 /* 0 = does not expire                                */
    bool renewable;
    int64_t next_renew_try_ms;
    unsigned generation;
    _Atomic int64_t clock_offset_ms;

    unsigned long born_gen;        /* vks_fork_generation() when the credentials were stored */
    atomic_ulong fork_seen;        /* the fork generation this struct's locks belong to      */

    pthread_mutex_t mounts_lock;
    struct mount_entry *mounts;

    pthread_mutex_t stats_lock;
    struct vks_vault_stats stats;

    pthread_mutex_t acc_lock;
    unsigned char acc_key[32];
    struct acc_entry acc[ACC_MAX];
    int acc_n, acc_next;
};

/* ------------------------------------------------------------------ config */

void vks_vault_config_defaults(struct vks_vault_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->auth = VKS_AUTH_TOKEN;
    cfg->timeout_ms = 60000;
    cfg->max_retries = 2;
    cfg->min_retry_wait_ms = 1000;
    cfg->max_retry_wait_ms = 1500;
    cfg->max_response_bytes = 1024 * 1024;
}

void vks_vault_config_clear(struct vks_vault_config *cfg)
{
    if (!cfg)
        return;
    free(cfg->address);
    free(cfg->namespace_);
    free(cfg->approle_mount);
    free(cfg->role_id);
    free(cfg->secret_id_file);
    free(cfg->cacert);
    free(cfg->capath);
    free(cfg->client_cert);
    free(cfg->client_key);
    free(cfg->tls_server_name);
    vks_secret_free(&cfg->token);
    vks_secret_free(&cfg->secret_id);
    memset(cfg, 0, sizeof *cfg);
}

/* Go strconv.ParseBool */
static int parse_bool(const char *s, bool *out)
{
    static const char *const t[] = { "1", "t", "T", "TRUE", "true", "True" };
    static const char *const f[] = { "0", "f", "F", "FALSE", "false", "False" };
    for (size_t i = 0; i < 6; i++) {
        if (strcmp(s, t[i]) == 0) { *out = true; return 0; }
        if (strcmp(s, f[i]) == 0) { *out = false; return 0; }
    }
    return -1;
}

/* Vault's ParseDurationSecond: a bare number is seconds, else a Go duration ("1m30s", "500ms"). */
static int parse_duration_ms(const char *s, long *out)
{
    const char *p = s;
    double total = 0;
    if (!*p)
        return -1;
    char *end;
    errno = 0;
    double bare = strtod(p, &end);
    if (errno == 0 && *end == '\0' && end != p && isdigit((unsigned char)*p)) {
        total = bare * 1000.0;
    } else {
        while (*p) {
            if (!isdigit((unsigned char)*p) && *p != '.')
                return -1;
            errno = 0;
            double v = strtod(p, &end);
            if (errno || end == p)
                return -1;
            p = end;
            double mul;
            if (strncmp(p, "ns", 2) == 0) { mul = 1e-6; p += 2; }
            else if (strncmp(p, "us", 2) == 0) { mul = 1e-3; p += 2; }
            else if (strncmp(p, "\xc2\xb5s", 3) == 0) { mul = 1e-3; p += 3; }
            else if (strncmp(p, "ms", 2) == 0) { mul = 1; p += 2; }
            else if (*p == 's') { mul = 1000; p += 1; }
            else if (*p == 'm') { mul = 60000; p += 1; }
            else if (*p == 'h') { mul = 3600000; p += 1; }
            else return -1;
            total += v * mul;
        }
    }
    if (total < 1 || total > 86400.0 * 1000 * 365)
        return -1;
    *out = (long)total;
    return 0;
}

static const char *env(const char *name)
{
    const char *v = getenv(name);
    return (v && *v) ? v : NULL;
}

static int set_str(char **dst, const char *v)
{
    free(*dst);
    *dst = NULL;
    if (!v)
        return 0;
    *dst = strdup(v);
    return *dst ? 0 : -1;
}

/* Reads a small secret file (token, secret_id) into a locked scratch buffer, then the trimmed bytes
 * into an arena slot. Opened without blocking; a regular file of at most VKS_SECRET_MAX bytes. */
static vks_status read_secret_file(const char *path, const char *what, vks_secret *out, bool missing_ok,
                                   struct vks_err *err)
{
    char what_file[64];
    snprintf(what_file, sizeof what_file, "%s file", what);
    const struct vks_file_opts fo = { .what = what_file, .code = VKS_E_CONFIG, .max_bytes = VKS_SECRET_MAX,
                                      .missing_ok = missing_ok };
    int fd = -1;
    vks_status st = vks_file_open(path, &fo, &fd, NULL, err);
    if (st != VKS_OK || fd < 0)
        return st;
    vks_scratch buf = { 0 };
    size_t n = 0;
    bool more = false;
    if ((st = vks_scratch_open(VKS_SECRET_MAX, &buf, err)) == VKS_OK)
        st = vks_file_read_fd(fd, buf.data, VKS_SECRET_MAX, &n, &more, path, &fo, err);
    close(fd);
    buf.len = n;
    if (st == VKS_OK && more)
        st = vks_err_set(err, VKS_E_CONFIG, "%s \"%s\" is larger than %d bytes", what_file, path, VKS_SECRET_MAX);
    size_t a = 0, b = n;
    while (a < b && isspace(buf.data[a]))
        a++;
    while (b > a && isspace(buf.data[b - 1]))
        b--;
    if (st == VKS_OK && b > a)
        st = vks_secret_dup(buf.data + a, b - a, out, err);
    vks_scratch_close(&buf);
    return st;
}

vks_status vks_vault_config_from_env(struct vks_vault_config *cfg, struct vks_err *err)
{
    if (!cfg)
        return vks_err_set(err, VKS_E_INVALID_ARG, "vks_vault_config_from_env: cfg is NULL");
    vks_vault_config_defaults(cfg);
    vks_status st = VKS_OK;
    const char *v;
#define STR(field, name) \
    if (set_str(&cfg->field, env(name)) != 0) { st = vks_err_set(err, VKS_E_NOMEM, "out of memory"); goto fail; }
    STR(address, "VAULT_ADDR");
    STR(namespace_, "VAULT_NAMESPACE");
    STR(cacert, "VAULT_CACERT");
    STR(capath, "VAULT_CAPATH");
    STR(client_cert, "VAULT_CLIENT_CERT");
    STR(client_key, "VAULT_CLIENT_KEY");
    STR(tls_server_name, "VAULT_TLS_SERVER_NAME");
    STR(role_id, "VKS_APPROLE_ROLE_ID");
    STR(secret_id_file, "VKS_APPROLE_SECRET_ID_FILE");
    STR(approle_mount, "VKS_APPROLE_MOUNT");
#undef STR
    if (!cfg->address && set_str(&cfg->address, DEFAULT_ADDR) != 0) {
        st = vks_err_set(err, VKS_E_NOMEM, "out of memory");
        goto fail;
    }
    if ((cfg->client_cert != NULL) != (cfg->client_key != NULL)) {
        st = vks_err_set(err, VKS_E_CONFIG, "VAULT_CLIENT_CERT and VAULT_CLIENT_KEY must be set together");
        goto fail;
    }
    if ((v = env("VAULT_SKIP_VERIFY")) && parse_bool(v, &cfg->skip_verify) != 0) {
        st = vks_err_set(err, VKS_E_CONFIG, "could not parse VAULT_SKIP_VERIFY (use true or false)");
        goto fail;
    }
    if ((v = env("VKS_VAULT_ALLOW_HTTP")) && parse_bool(v, &cfg->allow_http) != 0) {
        st = vks_err_set(err, VKS_E_CONFIG, "could not parse VKS_VAULT_ALLOW_HTTP (use true or false)");
        goto fail;
    }
    if ((v = env("VAULT_CLIENT_TIMEOUT")) && parse_duration_ms(v, &cfg->timeout_ms) != 0) {
        st = vks_err_set(err, VKS_E_CONFIG,
                         "could not parse VAULT_CLIENT_TIMEOUT '%.40s' (seconds, or a duration like 30s, 1m)", v);
        goto fail;
    }
    if ((v = env("VAULT_MAX_RETRIES"))) {
        char *end;
        errno = 0;
        long r = strtol(v, &end, 10);
        if (errno || *end || end == v || r < 0 || r > 100) {
            st = vks_err_set(err, VKS_E_CONFIG, "could not parse VAULT_MAX_RETRIES '%.40s' (0..100)", v);
            goto fail;
        }
        cfg->max_retries = (int)r;
    }
    if (cfg->role_id) {
        cfg->auth = VKS_AUTH_APPROLE;
        if ((v = getenv("VKS_APPROLE_SECRET_ID")) && *v) {
            st = vks_secret_dup(v, strlen(v), &cfg->secret_id, err);
            if (st != VKS_OK)
                goto fail;
        }
    }
    if ((v = getenv("VAULT_TOKEN")) && *v) {
        st = vks_secret_dup(v, strlen(v), &cfg->token, err);
        if (st != VKS_OK)
            goto fail;
    } else {
        const char *home = env("HOME");
        if (!home) {
            struct passwd *pw = getpwuid(getuid());
            home = pw ? pw->pw_dir : NULL;
        }
        if (home) {
            char path[1024];
            snprintf(path, sizeof path, "%s/.vault-token", home);
            st = read_secret_file(path, "token", &cfg->token, true, err);
            if (st != VKS_OK)
                goto fail;
        }
    }
    return VKS_OK;
fail:
    vks_vault_config_clear(cfg);
    return st;
}

/* ------------------------------------------------------------------ client */

static int64_t auth_now_ms(struct vks_vault *v)
{
    return vks_http_now_ms() + atomic_load(&v->clock_offset_ms);
}

static void stat_add(struct vks_vault *v, unsigned long *field, unsigned long n)
{
    pthread_mutex_lock(&v->stats_lock);
    *field += n;
    pthread_mutex_unlock(&v->stats_lock);
}

static atomic_bool skip_verify_warned;

static char *dup_opt(const char *s, bool *oom)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *oom = true;
    return d;
}

vks_status vks_vault_new(const struct vks_vault_config *cfg, struct vks_vault **out, struct vks_err *err)
{
    if (!cfg || !out)
        return vks_err_set(err, VKS_E_INVALID_ARG, "vks_vault_new: bad arguments");
    *out = NULL;
    struct vks_vault *v = calloc(1, sizeof *v);
    if (!v)
        return vks_err_set(err, VKS_E_NOMEM, "out of memory");
    pthread_mutex_init(&v->auth_lock, NULL);
    pthread_cond_init(&v->auth_cv, NULL);
    pthread_mutex_init(&v->mounts_lock, NULL);
    pthread_mutex_init(&v->stats_lock, NULL);
    pthread_mutex_init(&v->acc_lock, NULL);
    vks_status st = VKS_OK;
    if (RAND_bytes(v->acc_key, sizeof v->acc_key) != 1) {
        pthread_mutex_destroy(&v->acc_lock);
        pthread_mutex_destroy(&v->stats_lock);
        pthread_mutex_destroy(&v->mounts_lock);
        pthread_cond_destroy(&v->auth_cv);
        pthread_mutex_destroy(&v->auth_lock);
        free(v);
        return vks_err_set(err, VKS_E_INTERNAL, "no randomness for the client");
    }
    bool oom = false;
    struct vks_vault_config *c = &v->cfg;
    *c = *cfg;
    c->token = VKS_SECRET_EMPTY;
    c->secret_id = VKS_SECRET_EMPTY;
    c->address = dup_opt(cfg->address ? cfg->address : DEFAULT_ADDR, &oom);
    c->namespace_ = dup_opt(cfg->namespace_ && *cfg->namespace_ ? cfg->namespace_ : NULL, &oom);
    c->approle_mount = dup_opt(cfg->approle_mount && *cfg->approle_mount ? cfg->approle_mount : "approle", &oom);
    c->role_id = dup_opt(cfg->role_id, &oom);
    c->secret_id_file = dup_opt(cfg->secret_id_file, &oom);
    c->cacert = dup_opt(cfg->cacert, &oom);
    c->capath = dup_opt(cfg->capath, &oom);
    c->client_cert = dup_opt(cfg->client_cert, &oom);
    c->client_key = dup_opt(cfg->client_key, &oom);
    c->tls_server_name = dup_opt(cfg->tls_server_name, &oom);
    if (oom) {
        st = vks_err_set(err, VKS_E_NOMEM, "out of memory");
        goto fail;
    }
    if (c->timeout_ms <= 0)
        c->timeout_ms = 60000;
    if (c->max_retries < 0)
        c->max_retries = 2;
    if (c->min_retry_wait_ms <= 0)
        c->min_retry_wait_ms = 1000;
    if (c->max_retry_wait_ms <= 0)
        c->max_retry_wait_ms = c->min_retry_wait_ms > 1500 ? c->min_retry_wait_ms : 1500;
    if (c->max_retry_wait_ms < c->min_retry_wait_ms)
        c->max_retry_wait_ms = c->min_retry_wait_ms;
    if (c->max_response_bytes == 0)
        c->max_response_bytes = 1024 * 1024;
    if ((c->client_cert != NULL) != (c->client_key != NULL)) {
        st = vks_err_set(err, VKS_E_CONFIG, "client certificate and client key must be set together");
        goto fail;
    }
    if (c->auth == VKS_AUTH_APPROLE && (!c->role_id || !*c->role_id)) {
        st = vks_err_set(err, VKS_E_CONFIG, "AppRole auth needs a role_id (VKS_APPROLE_ROLE_ID)");
        goto fail;
    }
    st = vks_http_check_address(c->address, c->allow_http, v->origin, sizeof v->origin, err);
    if (st != VKS_OK)
        goto fail;
    /* the credentials go to the kept region: a forked child keeps them (vks_fork) */
    v->born_gen = vks_fork_generation();
    atomic_store(&v->fork_seen, v->born_gen);
    if (cfg->token.data && cfg->token.len) {
        st = vks_secret_dup_kept(cfg->token.data, cfg->token.len, &c->token, err);
        if (st != VKS_OK)
            goto fail;
    }
    if (cfg->secret_id.data && cfg->secret_id.len) {
        st = vks_secret_dup_kept(cfg->secret_id.data, cfg->secret_id.len, &c->secret_id, err);
        if (st != VKS_OK)
            goto fail;
    }
    if (c->auth == VKS_AUTH_TOKEN && c->token.len) {
        st = vks_secret_dup_kept(c->token.data, c->token.len, &v->token, err);
        if (st != VKS_OK)
            goto fail;
    }
    struct vks_http_config hc = {
        .cacert = c->cacert, .capath = c->capath, .client_cert = c->client_cert, .client_key = c->client_key,
        .tls_server_name = c->tls_server_name, .skip_verify = c->skip_verify, .allow_http = c->allow_http,
        .max_retries = c->max_retries, .min_retry_wait_ms = c->min_retry_wait_ms,
        .max_retry_wait_ms = c->max_retry_wait_ms, .max_response_bytes = c->max_response_bytes,
    };
    st = vks_http_new(&hc, &v->http, err);
    if (st != VKS_OK)
        goto fail;
    if (c->skip_verify && !atomic_exchange(&skip_verify_warned, true))
        fprintf(stderr, "vault-keysource: WARNING: TLS certificate verification of Vault is disabled "
                        "(VAULT_SKIP_VERIFY); use it only for development\n");
    *out = v;
    return VKS_OK;
fail:
    vks_vault_free(v);
    return st;
}

void vks_vault_free(struct vks_vault *v)
{
    if (!v)
        return;
    vks_http_free(v->http);
    vks_secret_free(&v->token);
    vks_vault_config_clear(&v->cfg);
    struct mount_entry *m = v->mounts;
    while (m) {
        struct mount_entry *n = m->next;
        free(m->key);
        free(m);
        m = n;
    }
    pthread_mutex_destroy(&v->auth_lock);
    pthread_cond_destroy(&v->auth_cv);
    pthread_mutex_destroy(&v->mounts_lock);
    pthread_mutex_destroy(&v->stats_lock);
    pthread_mutex_destroy(&v->acc_lock);
    vks_wipe(v->acc_key, sizeof v->acc_key);
    free(v);
}

/*
 * First use in a forked child (vks_fork_sync): the threads that held these locks, or ran a login
 * or renewal (busy), do not exist here, so the locks start afresh and nothing is in flight. The
 * credentials themselves are in the kept region (still valid, or refused by vks_fork_check in
 * strict mode); the HTTP pool drops the parent's connections on its own first use.
 */
static void vault_after_fork(void *arg)
{
    struct vks_vault *v = arg;
    pthread_mutex_init(&v->auth_lock, NULL);
    pthread_cond_init(&v->auth_cv, NULL);
    pthread_mutex_init(&v->mounts_lock, NULL);
    pthread_mutex_init(&v->stats_lock, NULL);
    pthread_mutex_init(&v->acc_lock, NULL);
    v->busy = false;
}

const char *vks_vault_address(const struct vks_vault *v)
{
    return v ? v->origin : "";
}

void vks_vault_get_stats(struct vks_vault *v, struct vks_vault_stats *out)
{
    vks_fork_sync(&v->fork_seen, vault_after_fork, v);
    struct vks_http_stats hs;
    vks_http_get_stats(v->http, &hs);
    pthread_mutex_lock(&v->stats_lock);
    *out = v->stats;
    pthread_mutex_unlock(&v->stats_lock);
    out->requests = hs.requests;
    out->connects = hs.connects;
    out->retries = hs.retries;
}

void vks_vault_advance_clock(struct vks_vault *v, int64_t seconds)
{
    atomic_fetch_add(&v->clock_offset_ms, seconds * 1000);
}

void vks_kv_result_free(struct vks_kv_result *res)
{
    if (!res)
        return;
    vks_secret_free(&res->value);
    for (size_t i = 0; i < VKS_KV_SIBLINGS_MAX; i++)
        vks_secret_free(&res->siblings[i]);
    free(res->custom_metadata_json);
    res->custom_metadata_json = NULL;
}

/* ------------------------------------------------------------------ helpers */

/* Vault's `errors` strings (not secret), joined and made printable, into out. "" when none. */
static void vault_errors(const char *body, size_t len, char *out, size_t cap)
{
    out[0] = '\0';
    if (!body || !len || cap < 8)
        return;
    struct vks_json_span arr, el;
    if (vks_json_find(body, len, "errors", &arr, NULL) != VKS_OK || arr.type != VKS_JSON_ARRAY)
        return;
    size_t cur = 0, o = 0;
    unsigned char tmp[256];
    while (vks_json_array_next(body, &arr, &cur, &el)) {
        if (el.type != VKS_JSON_STRING)
            continue;
        size_t n = 0;
        size_t need = vks_json_string_decoded_len(body, &el);
        if (need > sizeof tmp)
            need = sizeof tmp;
        /* decode what fits: decode the whole thing only when it fits */
        if (vks_json_string_decode(body, &el, tmp, sizeof tmp, &n, NULL) != VKS_OK) {
            n = 0;
            memcpy(tmp, "(long error text)", 17);
            n = 17;
        }
        if (o && o + 2 < cap - 1) {
            out[o++] = ';';
            out[o++] = ' ';
        }
        bool space = true;
        for (size_t i = 0; i < n && o < cap - 1; i++) {
            unsigned char c = tmp[i];
            if (c < 0x20 || c == 0x7f)
                c = ' ';
            if (c == '*' && space)
                continue; /* multierror bullets */
            if (c == ' ' && space)
                continue;
            space = c == ' ';
            out[o++] = (char)c;
        }
        while (o && out[o - 1] == ' ')
            o--;
        out[o] = '\0';
    }
}

static bool body_has_error(const char *body, size_t len, const char *needle)
{
    char e[400];
    vault_errors(body, len, e, sizeof e);
    return strstr(e, needle) != NULL;
}

/* "secret/x" style place naming for messages. */
struct place {
    const char *origin;
    const char *ns;
    const char *mount;
    const char *path;
    const char *key;
    int kv;
    int64_t version;
    const char *const *siblings; /* other keys wanted from the same read (vks_kv_request) */
    size_t n_siblings;
};

static void place_str(const struct place *p, char *out, size_t cap)
{
    char ver[40] = "";
    if (p->kv == 2 && p->version > 0)
        snprintf(ver, sizeof ver, " version %lld", (long long)p->version);
    int n = snprintf(out, cap, "mount '%.80s' path '%.160s' key '%.60s'%s (KV v%d) at %.100s%s%.60s%s",
                    p->mount, p->path, p->key, ver, p->kv ? p->kv : 2, p->origin,
                    p->ns ? " (namespace '" : "", p->ns ? p->ns : "", p->ns ? "')" : "");
    (void)n;
}

/* Maps a final non-2xx status (after retries) for any request. */
static vks_status map_status(long status, const char *body, size_t len, int attempts, const char *what,
                             struct vks_err *err)
{
    char e[300];
    vault_errors(body, len, e, sizeof e);
    const char *sep = e[0] ? ": " : "";
    char tries[40] = "";
    if (attempts > 1)
        snprintf(tries, sizeof tries, " after %d attempts", attempts);
    if (status == 503 && strstr(e, "Vault is sealed"))
        return vks_err_set(err, VKS_E_SEALED, "%s: Vault is sealed (HTTP 503%s)", what, tries);
    if (status == 403)
        return vks_err_set(err, VKS_E_PERMISSION_DENIED, "%s: permission denied (HTTP 403%s%s)", what, sep, e);
    if (status == 401)
        return vks_err_set(err, VKS_E_AUTH_FAILED, "%s: not authenticated (HTTP 401%s%s)", what, sep, e);
    if (status == 412 || status == 429 || status >= 500)
        return vks_err_set(err, VKS_E_UNAVAILABLE, "%s: Vault unavailable (HTTP %ld%s%s%s)", what, status, tries,
                           sep, e);
    return vks_err_set(err, VKS_E_BAD_RESPONSE, "%s: unexpected HTTP %ld%s%s", what, status, sep, e);
}

static vks_status build_url(char *url, size_t cap, const char *origin, const char *a, const char *b,
                            const char *c, int64_t version)
{
    size_t n = (size_t)snprintf(url, cap, "%s/v1/", origin);
    if (n >= cap)
        return VKS_E_BAD_KEYSOURCE;
    if (!vks_http_append_path(url, cap, &n, a))
        return VKS_E_BAD_KEYSOURCE;
    if (b) {
        if (n + 2 >= cap)
            return VKS_E_BAD_KEYSOURCE;
        url[n++] = '/';
        url[n] = '\0';
        if (!vks_http_append_path(url, cap, &n, b))
            return VKS_E_BAD_KEYSOURCE;
    }
    if (c) {
        if (n + 2 >= cap)
            return VKS_E_BAD_KEYSOURCE;
        url[n++] = '/';
        url[n] = '\0';
        if (!vks_http_append_path(url, cap, &n, c))
            return VKS_E_BAD_KEYSOURCE;
    }
    if (version > 0) {
        int k = snprintf(url + n, cap - n, "?version=%lld", (long long)version);
        if (k < 0 || (size_t)k >= cap - n)
            return VKS_E_BAD_KEYSOURCE;
    }
    return VKS_OK;
}

/* ------------------------------------------------------------------ auth */

struct tok {
    vks_secret secret;           /* a private copy for one request */
    unsigned generation;
    bool client;                 /* the client's own token (not a per-request override) */
};

static vks_status approle_login(struct vks_vault *v, int64_t deadline, vks_secret *tok_out, char *acc,
                                size_t acc_cap, int64_t *ttl, bool *renewable, struct vks_err *err)
{
    vks_status st;
    vks_secret sid = VKS_SECRET_EMPTY;
    vks_scratch body = { 0 };
    struct vks_http_lease *lease = NULL;
    char url[URL_CAP], what[200];
    snprintf(what, sizeof what, "AppRole login at auth/%.60s/login", v->cfg.approle_mount);
    if (build_url(url, sizeof url, v->origin, "auth", v->cfg.approle_mount, "login", 0) != VKS_OK)
        return vks_err_set(err, VKS_E_CONFIG, "bad AppRole mount '%.60s'", v->cfg.approle_mount);
    if (v->cfg.secret_id.len) {
        st = vks_secret_dup(v->cfg.secret_id.data, v->cfg.secret_id.len, &sid, err);
    } else if (v->cfg.secret_id_file) {
        struct vks_err ferr;
        st = read_secret_file(v->cfg.secret_id_file, "AppRole secret_id", &sid, false, &ferr);
        if (st != VKS_OK)
            st = vks_err_set(err, VKS_E_AUTH_FAILED, "%s", ferr.msg);
    } else {
        st = VKS_OK;
    }
    if (st != VKS_OK)
        return st;
    st = vks_scratch_open(2 * VKS_SECRET_MAX + 6 * 1024, &body, err);
    if (st != VKS_OK)
        goto out;
    {
        char *b = (char *)body.data;
        size_t cap = body.cap, o = 0, k;
        const char *rid = v->cfg.role_id;
        memcpy(b + o, "{\"role_id\":", 11);
        o += 11;
        k = vks_json_write_string((const unsigned char *)rid, strlen(rid), b + o, cap - o - 1);
        if (!k) {
            st = vks_err_set(err, VKS_E_CONFIG, "AppRole role_id too long");
            goto out;
        }
        o += k;
        if (sid.len) {
            memcpy(b + o, ",\"secret_id\":", 13);
            o += 13;
            k = vks_json_write_string(sid.data, sid.len, b + o, cap - o - 2);
            if (!k) {
                st = vks_err_set(err, VKS_E_AUTH_FAILED, "AppRole secret_id too long");
                goto out;
            }
            o += k;
        }
        b[o++] = '}';
        body.len = o;
    }
    vks_secret_free(&sid);
    struct vks_http_request rq = { .method = "POST", .url = url, .namespace_ = v->cfg.namespace_,
                                   .body = (const char *)body.data, .body_len = body.len,
                                   .deadline_ms = deadline, .what = what };
    struct vks_http_response rs = { 0 };
    st = vks_http_do(v->http, &rq, &rs, &lease, err);
    if (st != VKS_OK)
        goto out;
    if (rs.status != 200) {
        if (rs.status == 400 || rs.status == 403 || rs.status == 401) {
            char e[300];
            vault_errors(rs.body, rs.body_len, e, sizeof e);
            st = vks_err_set(err, VKS_E_AUTH_FAILED, "%s at %s failed (HTTP %ld%s%s)", what, v->origin, rs.status,
                             e[0] ? ": " : "", e);
        } else {
            char w2[400];
            snprintf(w2, sizeof w2, "%.150s at %.200s", what, v->origin);
            st = map_status(rs.status, rs.body, rs.body_len, rs.attempts, w2, err);
        }
        goto out;
    }
    struct vks_json_query q[4] = {
        { .path = { "auth", "client_token" }, .npath = 2 },
        { .path = { "auth", "accessor" }, .npath = 2 },
        { .path = { "auth", "lease_duration" }, .npath = 2 },
        { .path = { "auth", "renewable" }, .npath = 2 },
    };
    st = vks_json_scan(rs.body, rs.body_len, q, 4, "AppRole login response", err);
    if (st != VKS_OK)
        goto out;
    if (q[0].found.type != VKS_JSON_STRING) {
        st = vks_err_set(err, VKS_E_BAD_RESPONSE, "%s at %s: no auth.client_token in the answer", what, v->origin);
        goto out;
    }
    size_t need = vks_json_string_decoded_len(rs.body, &q[0].found);
    if (need == 0 || need > VKS_SECRET_MAX) {
        st = vks_err_set(err, VKS_E_BAD_RESPONSE, "%s at %s: unusable client_token length", what, v->origin);
        goto out;
    }
    st = vks_secret_alloc_kept(need, tok_out, err); /* the client's token: kept across fork */
    if (st != VKS_OK)
        goto out;
    st = vks_json_string_decode(rs.body, &q[0].found, tok_out->data, tok_out->cap, &tok_out->len, err);
    if (st != VKS_OK) {
        vks_secret_free(tok_out);
        goto out;
    }
    acc[0] = '\0';
    if (q[1].found.type == VKS_JSON_STRING) {
        size_t an = 0;
        if (vks_json_string_decode(rs.body, &q[1].found, (unsigned char *)acc, acc_cap - 1, &an, NULL) == VKS_OK)
            acc[an] = '\0';
        else
            acc[0] = '\0';
    }
    *ttl = 0;
    vks_json_int64(rs.body, &q[2].found, ttl);
    *renewable = q[3].found.type == VKS_JSON_TRUE;
out:
    vks_secret_free(&sid);
    if (lease)
        vks_http_release(v->http, lease);
    vks_scratch_close(&body);
    return st;
}

/* lookup-self (GET) or renew-self (POST) with the given token. On 200 fills ttl/renewable
 * (and the accessor for lookup). Returns the HTTP status in *status (0 on transport errors). */
static vks_status token_self(struct vks_vault *v, const vks_secret *tok, bool renew, int64_t deadline,
                             long *status, int64_t *ttl, bool *renewable, char *acc, size_t acc_cap,
                             struct vks_err *err)
{
    char url[URL_CAP];
    struct vks_http_lease *lease = NULL;
    build_url(url, sizeof url, v->origin, "auth/token", renew ? "renew-self" : "lookup-self", NULL, 0);
    struct vks_http_request rq = { .method = renew ? "POST" : "GET", .url = url, .namespace_ = v->cfg.namespace_,
                                   .token = tok->data, .token_len = tok->len,
                                   .body = renew ? "{}" : NULL, .body_len = renew ? 2 : 0,
                                   .deadline_ms = deadline, .what = renew ? "token renew-self" : "token lookup-self" };
    struct vks_http_response rs = { 0 };
    *status = 0;
    vks_status st = vks_http_do(v->http, &rq, &rs, &lease, err);
    if (st != VKS_OK)
        return st;
    *status = rs.status;
    if (rs.status == 200) {
        struct vks_json_query q[3];
        memset(q, 0, sizeof q);
        if (renew) {
            q[0] = (struct vks_json_query){ .path = { "auth", "lease_duration" }, .npath = 2 };
            q[1] = (struct vks_json_query){ .path = { "auth", "renewable" }, .npath = 2 };
            q[2] = (struct vks_json_query){ .path = { "auth", "accessor" }, .npath = 2 };
        } else {
            q[0] = (struct vks_json_query){ .path = { "data", "ttl" }, .npath = 2 };
            q[1] = (struct vks_json_query){ .path = { "data", "renewable" }, .npath = 2 };
            q[2] = (struct vks_json_query){ .path = { "data", "accessor" }, .npath = 2 };
        }
        st = vks_json_scan(rs.body, rs.body_len, q, 3, rq.what, err);
        if (st == VKS_OK) {
            *ttl = 0;
            vks_json_int64(rs.body, &q[0].found, ttl);
            *renewable = q[1].found.type == VKS_JSON_TRUE;
            if (acc && q[2].found.type == VKS_JSON_STRING) {
                size_t an = 0;
                if (vks_json_string_decode(rs.body, &q[2].found, (unsigned char *)acc, acc_cap - 1, &an, NULL) ==
                    VKS_OK)
                    acc[an] = '\0';
            }
        }
    } else {
        char w2[400];
        snprintf(w2, sizeof w2, "%.100s at %.200s", rq.what, v->origin);
        st = map_status(rs.status, rs.body, rs.body_len, rs.attempts, w2, err);
    }
    vks_http_release(v->http, lease);
    return st;
}

/* Gets a private copy of the client's token, logging in / renewing first when due. */
/*
 * Runs lookup-self (renew false) or renew-self (renew true) for the client's current token while
 * the auth lock is released. Called and returns with v->auth_lock held; sets v->busy meanwhile so
 * that no other thread starts the same work, then clears it and wakes the waiters. The token is
 * used through a private arena copy; *gen_out is the token generation the answer belongs to.
 */
static vks_status token_self_unlocked(struct vks_vault *v, bool renew, int64_t deadline, long *status,
                                      int64_t *ttl, bool *ren, char *acc, size_t acc_cap,
                                      unsigned *gen_out, struct vks_err *err)
{
    v->busy = true;
    vks_secret copy = VKS_SECRET_EMPTY;
    vks_status st = vks_secret_dup(v->token.data, v->token.len, &copy, NULL);
    *gen_out = v->generation;
    pthread_mutex_unlock(&v->auth_lock);
    if (st == VKS_OK)
        st = token_self(v, &copy, renew, deadline, status, ttl, ren, acc, acc_cap, err);
    vks_secret_free(&copy);
    pthread_mutex_lock(&v->auth_lock);
    v->busy = false;
    pthread_cond_broadcast(&v->auth_cv);
    return st;
}

static vks_status client_token(struct vks_vault *v, int64_t deadline, struct tok *t, char *acc, size_t acc_cap,
                               struct vks_err *err)
{
    vks_status st = vks_fork_check(v->born_gen, VKS_E_AUTH_FAILED, "the Vault token of this client", err);
    bool tried_lookup = false;
    if (st != VKS_OK)
        return st;
    pthread_mutex_lock(&v->auth_lock);
    for (;;) {
        int64_t now = auth_now_ms(v);
        bool expired = v->token.len == 0 || v->invalid ||
                       (v->ttl_s > 0 && now >= v->obtained_ms + v->ttl_s * 1000);
        if (v->cfg.auth == VKS_AUTH_APPROLE && expired) {
            if (v->busy) {
                pthread_cond_wait(&v->auth_cv, &v->auth_lock);
                continue;
            }
            v->busy = true;
            pthread_mutex_unlock(&v->auth_lock);
            vks_secret nt = VKS_SECRET_EMPTY;
            char nacc[64];
            int64_t ttl = 0;
            bool ren = false;
            st = approle_login(v, deadline, &nt, nacc, sizeof nacc, &ttl, &ren, err);
            pthread_mutex_lock(&v->auth_lock);
            v->busy = false;
            pthread_cond_broadcast(&v->auth_cv);
            if (st != VKS_OK)
                break;
            vks_secret_free(&v->token);
            v->token = nt;
            snprintf(v->accessor, sizeof v->accessor, "%s", nacc);
            v->ttl_s = ttl;
            v->renewable = ren;
            v->obtained_ms = auth_now_ms(v);
            v->next_renew_try_ms = 0;
            v->invalid = false;
            v->looked_up = true;
            v->generation++;
            stat_add(v, &v->stats.logins, 1);
            continue;
        }
        if (v->token.len == 0) {
            st = vks_err_set(err, VKS_E_AUTH_FAILED,
                             "no Vault token for %s: set VAULT_TOKEN, ~/.vault-token, vault_token or AppRole auth",
                             v->origin);
            break;
        }
        if (v->cfg.auth == VKS_AUTH_TOKEN && !v->looked_up && !v->busy && !tried_lookup &&
            now >= v->next_lookup_try_ms) {
            /* Once: learn the accessor (for audit) and the TTL (for renewal) of a static token. */
            long status = 0;
            int64_t ttl = 0;
            bool ren = false;
            char nacc[64] = "";
            unsigned gen;
            struct vks_err ignored;
            vks_status ls = token_self_unlocked(v, false, deadline, &status, &ttl, &ren, nacc, sizeof nacc,
                                                &gen, &ignored);
            tried_lookup = true;
            if (status != 0)
                v->looked_up = true; /* an answer (even 403) settles it */
            else
                v->next_lookup_try_ms = auth_now_ms(v) + 5000; /* Vault unreachable: not before 5 s */
            if (ls == VKS_OK && gen == v->generation) {
                snprintf(v->accessor, sizeof v->accessor, "%s", nacc);
                v->ttl_s = ttl;
                v->renewable = ren;
                v->obtained_ms = auth_now_ms(v);
            }
            continue;
        }
        if (v->renewable && v->ttl_s > 0 && !v->busy && now >= v->obtained_ms + v->ttl_s * 2000 / 3 &&
            now >= v->next_renew_try_ms) {
            /* Single-flight renewal: this thread renews, the others keep using the current token. */
            long status = 0;
            int64_t ttl = 0;
            bool ren = false;
            unsigned gen;
            struct vks_err rerr;
            vks_status rs = token_self_unlocked(v, true, deadline, &status, &ttl, &ren, NULL, 0, &gen, &rerr);
            if (gen == v->generation) {
                if (rs == VKS_OK) {
                    v->ttl_s = ttl;
                    v->renewable = ren;
                    v->obtained_ms = auth_now_ms(v);
                    stat_add(v, &v->stats.renewals, 1);
                } else if (status == 403 && v->cfg.auth == VKS_AUTH_APPROLE) {
                    v->invalid = true; /* revoked or expired: log in again */
                } else {
                    /* not renewable any more or Vault unreachable: keep the token, try later */
                    int64_t pause = v->ttl_s * 1000 / 10;
                    v->next_renew_try_ms = auth_now_ms(v) + (pause < 1000 ? 1000 : pause);
                    if (status == 400)
                        v->renewable = false;
                }
            }
            continue;
        }
        st = vks_secret_dup(v->token.data, v->token.len, &t->secret, err);
        t->generation = v->generation;
        t->client = true;
        if (acc)
            snprintf(acc, acc_cap, "%s", v->accessor);
        break;
    }
    pthread_mutex_unlock(&v->auth_lock);
    return st;
}

/* After a 403 with the client's own AppRole token: is the token itself dead? */
static bool token_is_dead(struct vks_vault *v, const struct tok *t, const char *body, size_t len, int64_t deadline)
{
    if (body_has_error(body, len, "invalid token") || body_has_error(body, len, "token expired") ||
        body_has_error(body, len, "revoked"))
        return true;
    long status = 0;
    int64_t ttl;
    bool ren;
    struct vks_err ignored;
    token_self(v, &t->secret, false, deadline, &status, &ttl, &ren, NULL, 0, &ignored);
    return status == 403;
}

static void mark_invalid(struct vks_vault *v, unsigned generation)
{
    pthread_mutex_lock(&v->auth_lock);
    if (v->generation == generation)
        v->invalid = true;
    pthread_mutex_unlock(&v->auth_lock);
}

/* Accessor of a per-request token: from the table, else one lookup-self (never fatal). */
static void request_token_accessor(struct vks_vault *v, const vks_secret *tok, const char *origin, const char *ns,
                                   int64_t deadline, char *acc, size_t acc_cap)
{
    unsigned char mac[32];
    unsigned int ml = 0;
    acc[0] = '\0';
    if (!HMAC(EVP_sha256(), v->acc_key, (int)sizeof v->acc_key, tok->data, tok->len, mac, &ml) || ml != 32)
        return;
    pthread_mutex_lock(&v->acc_lock);
    for (int i = 0; i < v->acc_n; i++) {
        if (vks_ct_equal(v->acc[i].mac, mac, 32)) {
            snprintf(acc, acc_cap, "%s", v->acc[i].accessor);
            pthread_mutex_unlock(&v->acc_lock);
            return;
        }
    }
    pthread_mutex_unlock(&v->acc_lock);
    char url[URL_CAP];
    struct vks_http_lease *lease = NULL;
    build_url(url, sizeof url, origin, "auth/token", "lookup-self", NULL, 0);
    struct vks_http_request rq = { .method = "GET", .url = url, .namespace_ = ns, .token = tok->data,
                                   .token_len = tok->len, .deadline_ms = deadline,
                                   .what = "token lookup-self (vault_token accessor)" };
    struct vks_http_response rs = { 0 };
    struct vks_err ignored;
    if (vks_http_do(v->http, &rq, &rs, &lease, &ignored) != VKS_OK)
        return; /* unreachable: the read will say so */
    char found[64] = "";
    if (rs.status == 200) {
        struct vks_json_span sp;
        size_t an = 0;
        if (vks_json_find(rs.body, rs.body_len, "data.accessor", &sp, NULL) == VKS_OK && sp.type == VKS_JSON_STRING &&
            vks_json_string_decode(rs.body, &sp, (unsigned char *)found, sizeof found - 1, &an, NULL) == VKS_OK)
            found[an] = '\0';
        else
            found[0] = '\0';
    }
    vks_http_release(v->http, lease);
    if (rs.status == 200 && found[0]) {
        pthread_mutex_lock(&v->acc_lock);
        int slot = v->acc_n < ACC_MAX ? v->acc_n++ : (v->acc_next++ % ACC_MAX);
        memcpy(v->acc[slot].mac, mac, 32);
        snprintf(v->acc[slot].accessor, sizeof v->acc[slot].accessor, "%s", found);
        pthread_mutex_unlock(&v->acc_lock);
    }
    snprintf(acc, acc_cap, "%s", found);
}

/* ------------------------------------------------------------------ KV version detection */

static int mounts_get(struct vks_vault *v, const char *key)
{
    int r = 0;
    pthread_mutex_lock(&v->mounts_lock);
    for (struct mount_entry *m = v->mounts; m; m = m->next)
        if (strcmp(m->key, key) == 0) {
            r = m->version;
            break;
        }
    pthread_mutex_unlock(&v->mounts_lock);
    return r;
}

static void mounts_put(struct vks_vault *v, const char *key, int version)
{
    struct mount_entry *e = calloc(1, sizeof *e);
    if (!e)
        return;
    e->key = strdup(key);
    if (!e->key) {
        free(e);
        return;
    }
    e->version = version;
    pthread_mutex_lock(&v->mounts_lock);
    e->next = v->mounts;
    v->mounts = e;
    pthread_mutex_unlock(&v->mounts_lock);
}

static vks_status detect_kv(struct vks_vault *v, const char *origin, const char *ns, const char *mount,
                            const struct tok *t, int64_t deadline, const struct place *pl, int *version,
                            int *attempts, struct vks_err *err)
{
    char key[ORIGIN_CAP + 512];
    snprintf(key, sizeof key, "%s\n%s\n%s", origin, ns ? ns : "", mount);
    int cached = mounts_get(v, key);
    if (cached) {
        *version = cached;
        return VKS_OK;
    }
    char url[URL_CAP], where[640], what[800];
    place_str(pl, where, sizeof where);
    snprintf(what, sizeof what, "KV version detection (sys/internal/ui/mounts) for %s", where);
    if (build_url(url, sizeof url, origin, "sys/internal/ui/mounts", mount, NULL, 0) != VKS_OK)
        return vks_err_set(err, VKS_E_BAD_KEYSOURCE, "vault_mount '%.80s' cannot be used in a URL", mount);
    struct vks_http_request rq = { .method = "GET", .url = url, .namespace_ = ns, .token = t->secret.data,
                                   .token_len = t->secret.len, .deadline_ms = deadline, .what = what };
    struct vks_http_response rs = { 0 };
    struct vks_http_lease *lease = NULL;
    stat_add(v, &v->stats.mount_lookups, 1);
    vks_status st = vks_http_do(v->http, &rq, &rs, &lease, err);
    *attempts += rs.attempts;
    if (st != VKS_OK)
        return st;
    if (rs.status == 200) {
        struct vks_json_query q[2] = {
            { .path = { "data", "options", "version" }, .npath = 3 },
            { .path = { "data", "type" }, .npath = 2 },
        };
        st = vks_json_scan(rs.body, rs.body_len, q, 2, "sys/internal/ui/mounts response", err);
        if (st == VKS_OK)
            *version = (q[0].found.type == VKS_JSON_STRING && vks_json_string_equals(rs.body, &q[0].found, "2")) ? 2 : 1;
    } else if (rs.status == 404) {
        *version = 1; /* what the Vault CLI assumes: an older Vault without the endpoint */
    } else {
        st = map_status(rs.status, rs.body, rs.body_len, rs.attempts, what, err);
        if (st == VKS_E_PERMISSION_DENIED && err) {
            size_t l = strlen(err->msg);
            snprintf(err->msg + l, sizeof err->msg - l, "; set vault_kv_version to 1 or 2 to skip detection");
        }
    }
    vks_http_release(v->http, lease);
    if (st == VKS_OK)
        mounts_put(v, key, *version);
    return st;
}

/* ------------------------------------------------------------------ KV read */

/* A sibling key's value (vks_kv_request.siblings): a string that fits an arena slot, else left
 * empty. Never an error: the caller simply does not get that key from this read. */
static void decode_sibling(const char *body, const struct vks_json_span *sp, vks_secret *out)
{
    if (sp->type != VKS_JSON_STRING)
        return;
    size_t need = vks_json_string_decoded_len(body, sp);
    if (need > VKS_SECRET_MAX || vks_secret_alloc(need ? need : 1, out, NULL) != VKS_OK)
        return;
    if (vks_json_string_decode(body, sp, out->data, out->cap, &out->len, NULL) != VKS_OK)
        vks_secret_free(out);
}

static vks_status parse_ok(const char *body, size_t len, const struct place *pl, struct vks_kv_result *res,
                           struct vks_err *err)
{
    char where[640];
    place_str(pl, where, sizeof where);
    struct vks_json_query q[4 + VKS_KV_SIBLINGS_MAX];
    memset(q, 0, sizeof q);
    if (pl->kv == 2) {
        q[0] = (struct vks_json_query){ .path = { "data", "data", pl->key }, .npath = 3 };
        q[1] = (struct vks_json_query){ .path = { "data", "metadata", "version" }, .npath = 3 };
        q[2] = (struct vks_json_query){ .path = { "data", "metadata", "custom_metadata" }, .npath = 3 };
        q[3] = (struct vks_json_query){ .path = { "data", "data" }, .npath = 2 };
    } else {
        q[0] = (struct vks_json_query){ .path = { "data", pl->key }, .npath = 2 };
        q[1] = (struct vks_json_query){ .path = { "lease_duration" }, .npath = 1 };
        q[2] = (struct vks_json_query){ .npath = 0 };
        q[3] = (struct vks_json_query){ .path = { "data" }, .npath = 1 };
    }
    for (size_t i = 0; i < pl->n_siblings; i++)
        q[4 + i] = pl->kv == 2 ? (struct vks_json_query){ .path = { "data", "data", pl->siblings[i] }, .npath = 3 }
                               : (struct vks_json_query){ .path = { "data", pl->siblings[i] }, .npath = 2 };
    struct vks_err jerr;
    if (vks_json_scan(body, len, q, 4 + pl->n_siblings, "response", &jerr) != VKS_OK)
        return vks_err_set(err, VKS_E_BAD_RESPONSE, "bad answer for %s: %s", where, jerr.msg);
    if (q[3].found.type != VKS_JSON_OBJECT) {
        if (pl->kv == 2 && q[3].found.type == VKS_JSON_NONE && q[1].found.type == VKS_JSON_NONE)
            return vks_err_set(err, VKS_E_BAD_RESPONSE,
                               "bad answer for %s: no data.data (is the mount KV v1? set vault_kv_version)", where);
        return vks_err_set(err, VKS_E_BAD_RESPONSE, "bad answer for %s: no data object", where);
    }
    if (q[0].found.type == VKS_JSON_NONE)
        return vks_err_set(err, VKS_E_MISSING_KEY, "secret has no key '%.60s': %s", pl->key, where);
    if (q[0].found.type != VKS_JSON_STRING) {
        static const char *const names[] = { "none", "an object", "an array", "a string", "a number", "a boolean",
                                             "a boolean", "null" };
        return vks_err_set(err, VKS_E_MISSING_KEY, "value of key '%.60s' is %s, not a string: %s", pl->key,
                           names[q[0].found.type], where);
    }
    size_t need = vks_json_string_decoded_len(body, &q[0].found);
    if (need > VKS_SECRET_MAX)
        return vks_err_set(err, VKS_E_BAD_RESPONSE, "value of key '%.60s' is larger than %d bytes: %s", pl->key,
                           VKS_SECRET_MAX, where);
    vks_status st = vks_secret_alloc(need ? need : 1, &res->value, err);
    if (st != VKS_OK)
        return st;
    st = vks_json_string_decode(body, &q[0].found, res->value.data, res->value.cap, &res->value.len, err);
    if (st != VKS_OK) {
        vks_secret_free(&res->value);
        return st;
    }
    if (pl->kv == 2) {
        vks_json_int64(body, &q[1].found, &res->secret_version);
        /* anything but absent/null goes to the restriction check: a non-object refuses there */
        if (q[2].found.type != VKS_JSON_NONE && q[2].found.type != VKS_JSON_NULL) {
            res->custom_metadata_json = strndup(body + q[2].found.off, q[2].found.len);
            if (!res->custom_metadata_json) {
                vks_secret_free(&res->value);
                return vks_err_set(err, VKS_E_NOMEM, "out of memory");
            }
        }
    } else {
        vks_json_int64(body, &q[1].found, &res->lease_duration);
    }
    for (size_t i = 0; i < pl->n_siblings; i++)
        decode_sibling(body, &q[4 + i].found, &res->siblings[i]);
    return VKS_OK;
}

static vks_status parse_404(const char *body, size_t len, const struct place *pl, struct vks_err *err)
{
    char where[640];
    place_str(pl, where, sizeof where);
    struct vks_json_query q[4] = {
        { .path = { "data", "metadata" }, .npath = 2 },
        { .path = { "data", "metadata", "destroyed" }, .npath = 3 },
        { .path = { "data", "metadata", "deletion_time" }, .npath = 3 },
        { .path = { "data", "metadata", "version" }, .npath = 3 },
    };
    if (pl->kv == 2 && vks_json_scan(body, len, q, 4, NULL, NULL) == VKS_OK && q[0].found.type == VKS_JSON_OBJECT) {
        int64_t ver = 0;
        vks_json_int64(body, &q[3].found, &ver);
        if (q[1].found.type == VKS_JSON_TRUE)
            return vks_err_set(err, VKS_E_DESTROYED, "secret version %lld is destroyed: %s", (long long)ver, where);
        if (q[2].found.type == VKS_JSON_STRING && !vks_json_string_equals(body, &q[2].found, ""))
            return vks_err_set(err, VKS_E_DELETED, "secret version %lld is deleted: %s", (long long)ver, where);
    }
    char e[300];
    vault_errors(body, len, e, sizeof e);
    return vks_err_set(err, VKS_E_NOT_FOUND, "no secret at %s (HTTP 404%s%s)", where, e[0] ? ": " : "", e);
}

/* What a KV request names, checked: origin, namespace, normalised mount, path, key, versions.
 * pl points into this struct (origin, mount): it is never copied. */
struct kv_target {
    char origin_buf[ORIGIN_CAP];
    char mount[256];
    struct place pl;
};

static vks_status kv_bad_place(const struct place *pl, const char *fmt, struct vks_err *err)
{
    char where[640];
    place_str(pl, where, sizeof where);
    return vks_err_set(err, VKS_E_BAD_KEYSOURCE, fmt, where);
}

/* Step 1: check and normalise the request's address, mount, path, key and versions. */
static vks_status kv_target_resolve(struct vks_vault *v, const struct vks_kv_request *req, struct kv_target *tg,
                                    struct vks_err *err)
{
    const char *origin = v->origin;
    if (req->address && *req->address) {
        struct vks_err aerr;
        if (vks_http_check_address(req->address, v->cfg.allow_http, tg->origin_buf, sizeof tg->origin_buf,
                                   &aerr) != VKS_OK)
            return vks_err_set(err, VKS_E_BAD_KEYSOURCE, "vault_address: %s", aerr.msg);
        origin = tg->origin_buf;
    }
    const char *ns = req->namespace_ ? (*req->namespace_ ? req->namespace_ : NULL) : v->cfg.namespace_;
    if (!req->mount || !req->path)
        return vks_err_set(err, VKS_E_BAD_KEYSOURCE, "vault_mount and vault_path are required");
    const char *m = req->mount;
    while (*m == '/')
        m++;
    size_t ml = strlen(m);
    while (ml && m[ml - 1] == '/')
        ml--;
    if (ml == 0 || ml >= sizeof tg->mount)
        return vks_err_set(err, VKS_E_BAD_KEYSOURCE, "vault_mount '%.80s' is empty or too long", req->mount);
    memcpy(tg->mount, m, ml);
    tg->mount[ml] = '\0';
    const char *path = req->path;
    while (*path == '/')
        path++;
    if (!*path)
        return vks_err_set(err, VKS_E_BAD_KEYSOURCE, "vault_path is empty (mount '%.80s')", tg->mount);
    const char *key = req->key && *req->key ? req->key : "key";
    if (req->kv_version != 0 && req->kv_version != 1 && req->kv_version != 2)
        return vks_err_set(err, VKS_E_BAD_KEYSOURCE, "vault_kv_version must be 1, 2 or auto (got %d)", req->kv_version);
    if (req->version < 0)
        return vks_err_set(err, VKS_E_BAD_KEYSOURCE, "vault_version must be positive");
    if (req->n_siblings > VKS_KV_SIBLINGS_MAX || (req->n_siblings > 0 && req->siblings == NULL))
        return vks_err_set(err, VKS_E_INVALID_ARG, "at most %d sibling keys per read", VKS_KV_SIBLINGS_MAX);
    tg->pl = (struct place){ origin, ns, tg->mount, path, key, req->kv_version, req->version, req->siblings,
                             req->n_siblings };
    char probe[URL_CAP];
    if (build_url(probe, sizeof probe, origin, tg->mount, "data", path, req->version) != VKS_OK)
        return kv_bad_place(&tg->pl, "vault_path/vault_mount has a '.' or '..' segment or is too long: %s", err);
    return VKS_OK;
}

/* Step 2: the token for this read: the request's own vault_token, or the client's. */
static vks_status kv_token(struct vks_vault *v, const struct vks_kv_request *req, const struct place *pl,
                           int64_t deadline, struct tok *t, struct vks_kv_result *res, struct vks_err *err)
{
    if (req->token && req->token->data && req->token->len) {
        vks_status st = vks_secret_dup(req->token->data, req->token->len, &t->secret, err);
        if (st == VKS_OK)
            request_token_accessor(v, &t->secret, pl->origin, pl->ns, deadline, res->token_accessor,
                                   sizeof res->token_accessor);
        return st;
    }
    vks_status st = client_token(v, deadline, t, res->token_accessor, sizeof res->token_accessor, err);
    if (st != VKS_OK && err) {
        char where[640];
        place_str(pl, where, sizeof where);
        size_t l = strlen(err->msg);
        snprintf(err->msg + l, sizeof err->msg - l, " (reading %s)", where);
    }
    return st;
}

/* The client's AppRole token died (expired, revoked): drop it and log in once more. */
static vks_status kv_relogin(struct vks_vault *v, struct tok *t, int64_t deadline, struct vks_kv_result *res,
                             struct vks_err *err)
{
    mark_invalid(v, t->generation);
    vks_secret_free(&t->secret);
    stat_add(v, &v->stats.relogins, 1);
    return client_token(v, deadline, t, res->token_accessor, sizeof res->token_accessor, err);
}

/* Step 4: turns Vault's answer to the read into a value or a failure. */
static vks_status kv_answer(const struct vks_http_response *rs, const struct place *pl, const char *what,
                            struct vks_kv_result *res, struct vks_err *err)
{
    if (rs->status == 200)
        return parse_ok(rs->body, rs->body_len, pl, res, err);
    if (rs->status == 404)
        return parse_404(rs->body, rs->body_len, pl, err);
    if (rs->status == 204) {
        char where[640];
        place_str(pl, where, sizeof where);
        return vks_err_set(err, VKS_E_NOT_FOUND, "no data at %s (HTTP 204)", where);
    }
    return map_status(rs->status, rs->body, rs->body_len, rs->attempts, what, err);
}

/*
 * Step 3: one try with token t: KV version (detected unless given), then the read itself.
 * *relogin is set when the failure is the client's dead AppRole token and may_relogin allows
 * one more login.
 */
static vks_status kv_read_once(struct vks_vault *v, const struct vks_kv_request *req, struct kv_target *tg,
                               const struct tok *t, bool may_relogin, int64_t deadline, struct vks_kv_result *res,
                               bool *relogin, struct vks_err *err)
{
    struct place *pl = &tg->pl;
    *relogin = false;
    int kv = req->kv_version;
    if (kv == 0) {
        vks_status st = detect_kv(v, pl->origin, pl->ns, tg->mount, t, deadline, pl, &kv, &res->attempts, err);
        /* the token died before the detection request: same cure as for a read */
        if (st == VKS_E_PERMISSION_DENIED && may_relogin && token_is_dead(v, t, NULL, 0, deadline))
            *relogin = true;
        if (st != VKS_OK)
            return st;
    }
    pl->kv = kv;
    res->kv_version = kv;
    if (kv == 1 && req->version > 0)
        return kv_bad_place(pl, "vault_version needs a KV v2 mount: %s", err);
    char url[URL_CAP];
    if (kv == 2)
        build_url(url, sizeof url, pl->origin, tg->mount, "data", pl->path, req->version);
    else
        build_url(url, sizeof url, pl->origin, tg->mount, pl->path, NULL, 0);
    char where[640], what[700];
    place_str(pl, where, sizeof where);
    snprintf(what, sizeof what, "read of %s", where);
    struct vks_http_request rq = { .method = "GET", .url = url, .namespace_ = pl->ns, .token = t->secret.data,
                                   .token_len = t->secret.len, .deadline_ms = deadline, .what = what };
    struct vks_http_response rs = { 0 };
    struct vks_http_lease *lease = NULL;
    vks_status st = vks_http_do(v->http, &rq, &rs, &lease, err);
    res->attempts += rs.attempts; /* counted on failures too */
    if (st != VKS_OK)
        return st;
    res->http_status = (int)rs.status;
    if (rs.status == 403 && may_relogin && token_is_dead(v, t, rs.body, rs.body_len, deadline))
        *relogin = true; /* expired or revoked AppRole token: log in once more and retry once */
    else
        st = kv_answer(&rs, pl, what, res, err);
    vks_http_release(v->http, lease);
    return st;
}

/* On failure a result keeps only its diagnostics (status, attempts, KV version, accessor). */
static void kv_result_reset_keep_diagnostics(struct vks_kv_result *res)
{
    int hs = res->http_status, at = res->attempts, kvv = res->kv_version;
    char acc[64];
    memcpy(acc, res->token_accessor, sizeof acc);
    vks_kv_result_free(res);
    memset(res, 0, sizeof *res);
    res->http_status = hs;
    res->attempts = at;
    res->kv_version = kvv;
    memcpy(res->token_accessor, acc, sizeof acc);
}

vks_status vks_vault_kv_read(struct vks_vault *v, const struct vks_kv_request *req, struct vks_kv_result *res,
                             struct vks_err *err)
{
    if (!v || !req || !res)
        return vks_err_set(err, VKS_E_INVALID_ARG, "vks_vault_kv_read: bad arguments");
    memset(res, 0, sizeof *res);
    vks_fork_sync(&v->fork_seen, vault_after_fork, v);
    stat_add(v, &v->stats.reads, 1);
    int64_t deadline = vks_http_now_ms() + v->cfg.timeout_ms;
    struct kv_target tg;
    vks_status st = kv_target_resolve(v, req, &tg, err);
    if (st != VKS_OK)
        return st;
    struct tok t = { VKS_SECRET_EMPTY, 0, false };
    st = kv_token(v, req, &tg.pl, deadline, &t, res, err);
    if (st != VKS_OK)
        return st;
    bool relogged = false;
    for (;;) {
        bool relogin = false;
        bool may_relogin = t.client && v->cfg.auth == VKS_AUTH_APPROLE && !relogged;
        st = kv_read_once(v, req, &tg, &t, may_relogin, deadline, res, &relogin, err);
        if (!relogin)
            break;
        relogged = true;
        st = kv_relogin(v, &t, deadline, res, err);
        if (st != VKS_OK)
            break;
    }
    vks_secret_free(&t.secret);
    if (st != VKS_OK)
        kv_result_reset_keep_diagnostics(res);
    return st;
}

/* ------------------------------------------------------------------ administrative calls (vks cred) */

void vks_vault_reply_free(struct vks_vault_reply *r)
{
    if (r == NULL)
        return;
    if (r->body != NULL) {
        vks_wipe(r->body, r->body_len);
        free(r->body);
    }
    memset(r, 0, sizeof *r);
}

/* Maps an administrative call's final status: 2xx ok; 404 not found; 400 CAS lost or refused. */
static vks_status admin_status(long status, const char *body, size_t len, int attempts, const char *what,
                               struct vks_err *err)
{
    if (status >= 200 && status < 300)
        return VKS_OK;
    if (status == 404)
        return vks_err_set(err, VKS_E_NOT_FOUND, "%s: not found (HTTP 404)", what);
    if (status == 400) {
        char e[300];
        vault_errors(body, len, e, sizeof e);
        if (strstr(e, "check-and-set parameter did not match"))
            return vks_err_set(err, VKS_E_CONFLICT,
                               "%s: changed concurrently (check-and-set: the secret is no longer at the "
                               "version read); nothing was written, read it again and retry", what);
        return vks_err_set(err, VKS_E_REJECTED, "%s: Vault refused the request (HTTP 400%s%s)", what,
                           e[0] ? ": " : "", e);
    }
    return map_status(status, body, len, attempts, what, err);
}

/*
 * One administrative request with the client's own token (an AppRole token is logged in first when
 * needed). The answer's body is copied to the heap (these answers hold no secret: metadata, key
 * lists, write receipts); out may be NULL. The status is mapped by admin_status.
 */
static vks_status admin_call_ex(struct vks_vault *v, const char *method, const char *mount, const char *section,
                                const char *path, int64_t version, const char *body, size_t blen, const char *what,
                                struct vks_vault_reply *out, vks_scratch *sout, struct vks_err *err);
static vks_status admin_call(struct vks_vault *v, const char *method, const char *mount, const char *section,
                             const char *path, const char *body, size_t blen, const char *what,
                             struct vks_vault_reply *out, struct vks_err *err)
{
    return admin_call_ex(v, method, mount, section, path, 0, body, blen, what, out, NULL, err);
}

/* admin_call with a ?version= and, when sout is set, the answer's body in a fresh scratch buffer
 * (an answer that may hold plaintext: KV data of any secret) instead of *out. */
static vks_status admin_call_ex(struct vks_vault *v, const char *method, const char *mount, const char *section,
                                const char *path, int64_t version, const char *body, size_t blen, const char *what,
                                struct vks_vault_reply *out, vks_scratch *sout, struct vks_err *err)
{
    if (!v || !mount || !*mount || !path)
        return vks_err_set(err, VKS_E_INVALID_ARG, "%s: bad arguments", what);
    vks_fork_sync(&v->fork_seen, vault_after_fork, v);
    char url[URL_CAP];
    if (build_url(url, sizeof url, v->origin, mount, section, *path ? path : NULL, version) != VKS_OK)
        return vks_err_set(err, VKS_E_INVALID_INPUT, "%s: mount/path has a '.' or '..' segment or is too long", what);
    int64_t deadline = vks_http_now_ms() + v->cfg.timeout_ms;
    struct tok t = { VKS_SECRET_EMPTY, 0, false };
    char acc[64] = "";
    vks_status st = client_token(v, deadline, &t, acc, sizeof acc, err);
    if (st != VKS_OK)
        return st;
    struct vks_http_request rq = { .method = method, .url = url, .namespace_ = v->cfg.namespace_,
                                   .token = t.secret.data, .token_len = t.secret.len, .body = body,
                                   .body_len = blen, .deadline_ms = deadline, .what = what };
    struct vks_http_response rs = { 0 };
    struct vks_http_lease *lease = NULL;
    st = vks_http_do(v->http, &rq, &rs, &lease, err);
    vks_secret_free(&t.secret);
    if (st != VKS_OK)
        return st;
    st = admin_status(rs.status, rs.body, rs.body_len, rs.attempts, what, err);
    if (sout != NULL && st == VKS_OK) {
        st = vks_scratch_open(rs.body_len + 1, sout, err);
        if (st == VKS_OK) {
            memcpy(sout->data, rs.body, rs.body_len);
            sout->len = rs.body_len;
        }
    }
    if (out != NULL) {
        out->http_status = rs.status;
        snprintf(out->token_accessor, sizeof out->token_accessor, "%s", acc);
        if (rs.body_len > 0 && (out->body = malloc(rs.body_len + 1)) == NULL)
            st = vks_err_set(err, VKS_E_NOMEM, "%s: out of memory", what);
        else if (rs.body_len > 0) {
            memcpy(out->body, rs.body, rs.body_len);
            out->body[rs.body_len] = '\0';
            out->body_len = rs.body_len;
        }
    }
    vks_http_release(v->http, lease);
    return st;
}

static void admin_what(char *out, size_t cap, const char *verb, const char *mount, const char *section,
                       const char *path)
{
    snprintf(out, cap, "%s of %.80s/%s/%.200s at %.100s", verb, mount, section, path, "Vault");
}

vks_status vks_vault_kv2_write(struct vks_vault *v, const char *mount, const char *path, const char *data_json,
                               int64_t cas, bool patch, int64_t *new_version, struct vks_err *err)
{
    if (!data_json || cas < -1)
        return vks_err_set(err, VKS_E_INVALID_ARG, "vks_vault_kv2_write: bad arguments");
    size_t dl = strlen(data_json), cap = dl + 64;
    char *body = malloc(cap);
    if (body == NULL)
        return vks_err_set(err, VKS_E_NOMEM, "KV v2 write: out of memory");
    int n = cas >= 0 ? snprintf(body, cap, "{\"options\":{\"cas\":%lld},\"data\":%s}", (long long)cas, data_json)
                     : snprintf(body, cap, "{\"data\":%s}", data_json);
    char what[512];
    admin_what(what, sizeof what, patch ? "patch" : "write", mount, "data", path);
    struct vks_vault_reply r = { 0 };
    vks_status st = admin_call(v, patch ? "PATCH" : "POST", mount, "data", path, body, (size_t)n, what, &r, err);
    vks_wipe(body, cap); /* an envelope, not plaintext; wiped all the same */
    free(body);
    if (st == VKS_OK && new_version != NULL) {
        struct vks_json_span sp;
        *new_version = 0;
        if (r.body == NULL || vks_json_find(r.body, r.body_len, "data.version", &sp, NULL) != VKS_OK ||
            !vks_json_int64(r.body, &sp, new_version) || *new_version <= 0)
            st = vks_err_set(err, VKS_E_BAD_RESPONSE, "%s: the answer has no data.version", what);
    }
    vks_vault_reply_free(&r);
    return st;
}

vks_status vks_vault_kv2_metadata_read(struct vks_vault *v, const char *mount, const char *path,
                                       struct vks_vault_reply *out, struct vks_err *err)
{
    char what[512];
    admin_what(what, sizeof what, "metadata read", mount, "metadata", path);
    memset(out, 0, sizeof *out);
    vks_status st = admin_call(v, "GET", mount, "metadata", path, NULL, 0, what, out, err);
    if (st != VKS_OK)
        vks_vault_reply_free(out);
    return st;
}

vks_status vks_vault_kv2_metadata_write(struct vks_vault *v, const char *mount, const char *path,
                                        const char *json, struct vks_err *err)
{
    char what[512];
    admin_what(what, sizeof what, "metadata write", mount, "metadata", path);
    if (!json)
        return vks_err_set(err, VKS_E_INVALID_ARG, "%s: no body", what);
    return admin_call(v, "POST", mount, "metadata", path, json, strlen(json), what, NULL, err);
}

vks_status vks_vault_kv2_list(struct vks_vault *v, const char *mount, const char *path,
                              struct vks_vault_reply *out, struct vks_err *err)
{
    char what[512];
    admin_what(what, sizeof what, "LIST", mount, "metadata", path);
    memset(out, 0, sizeof *out);
    vks_status st = admin_call(v, "LIST", mount, "metadata", path, NULL, 0, what, out, err);
    if (st == VKS_E_NOT_FOUND) { /* Vault answers an empty folder with 404 */
        vks_vault_reply_free(out);
        vks_err_clear(err);
        return VKS_OK;
    }
    if (st != VKS_OK)
        vks_vault_reply_free(out);
    return st;
}

vks_status vks_vault_kv2_metadata_delete(struct vks_vault *v, const char *mount, const char *path,
                                         struct vks_err *err)
{
    char what[512];
    admin_what(what, sizeof what, "delete", mount, "metadata", path);
    return admin_call(v, "DELETE", mount, "metadata", path, NULL, 0, what, NULL, err);
}

static void json_copy_str(const struct vks_vault_reply *r, const char *dotted, char *out, size_t cap)
{
    struct vks_json_span sp;
    size_t n = 0;
    out[0] = '\0';
    if (r->body && vks_json_find(r->body, r->body_len, dotted, &sp, NULL) == VKS_OK && sp.type == VKS_JSON_STRING &&
        vks_json_string_decode(r->body, &sp, (unsigned char *)out, cap - 1, &n, NULL) == VKS_OK)
        out[n] = '\0';
    else
        out[0] = '\0';
}

vks_status vks_vault_token_identity(struct vks_vault *v, char *display_name, size_t dn_cap, char *accessor,
                                    size_t acc_cap, struct vks_err *err)
{
    if (!display_name || dn_cap < 2 || !accessor || acc_cap < 2)
        return vks_err_set(err, VKS_E_INVALID_ARG, "vks_vault_token_identity: bad arguments");
    struct vks_vault_reply r = { 0 };
    vks_status st = admin_call(v, "GET", "auth/token", "lookup-self", "", NULL, 0,
                               "token lookup-self (operator identity)", &r, err);
    if (st == VKS_OK) {
        json_copy_str(&r, "data.display_name", display_name, dn_cap);
        json_copy_str(&r, "data.accessor", accessor, acc_cap);
        for (char *p = display_name; *p; p++) /* printable only: it goes into lines and events */
            if ((unsigned char)*p < 0x20 || *p == 0x7f)
                *p = '?';
    }
    vks_vault_reply_free(&r);
    return st;
}

vks_status vks_vault_token_can(struct vks_vault *v, const char *path, const char *cap, bool *can,
                               struct vks_err *err)
{
    *can = false;
    if (!path || !cap || !*cap || strlen(path) > 1024 || strpbrk(path, "\"\\") || strpbrk(cap, "\"\\"))
        return vks_err_set(err, VKS_E_INVALID_ARG, "vks_vault_token_can: bad arguments");
    char body[1100], what[1200], want[40], root[] = "\"root\"";
    int n = snprintf(body, sizeof body, "{\"paths\":[\"%s\"]}", path);
    snprintf(what, sizeof what, "capabilities-self of %.1024s", path);
    snprintf(want, sizeof want, "\"%.32s\"", cap);
    struct vks_vault_reply r = { 0 };
    vks_status st = admin_call(v, "POST", "sys", "capabilities-self", "", body, (size_t)n, what, &r, err);
    struct vks_json_span sp;
    if (st == VKS_OK && (r.body == NULL || vks_json_find(r.body, r.body_len, "data.capabilities", &sp, NULL) != VKS_OK ||
                         sp.type != VKS_JSON_ARRAY))
        st = vks_err_set(err, VKS_E_BAD_RESPONSE, "%s: the answer has no data.capabilities list", what);
    if (st == VKS_OK) { /* a list of plain capability names: look for the quoted name */
        char *list = strndup(r.body + sp.off, sp.len);
        if (list == NULL)
            st = vks_err_set(err, VKS_E_NOMEM, "%s: out of memory", what);
        else
            *can = strstr(list, want) != NULL || strstr(list, root) != NULL;
        free(list);
    }
    vks_vault_reply_free(&r);
    return st;
}

/* ---- additions for vks backup (docs/internals/backup.md) ---- */

vks_status vks_vault_kv2_data_read_raw(struct vks_vault *v, const char *mount, const char *path, int64_t version,
                                       vks_scratch *out, struct vks_err *err)
{
    char what[512];
    admin_what(what, sizeof what, "data read", mount, "data", path);
    memset(out, 0, sizeof *out);
    if (version < 1)
        return vks_err_set(err, VKS_E_INVALID_ARG, "%s: a version is required", what);
    return admin_call_ex(v, "GET", mount, "data", path, version, NULL, 0, what, NULL, out, err);
}

vks_status vks_vault_kv2_versions_op(struct vks_vault *v, const char *mount, const char *op, const char *path,
                                     const int64_t *versions, size_t n, struct vks_err *err)
{
    char what[512], body[64 + 24 * 64];
    admin_what(what, sizeof what, op ? op : "?", mount, op ? op : "?", path);
    if (!op || (strcmp(op, "delete") && strcmp(op, "destroy") && strcmp(op, "undelete")) || n == 0 || n > 64)
        return vks_err_set(err, VKS_E_INVALID_ARG, "%s: bad arguments", what);
    size_t l = (size_t)snprintf(body, sizeof body, "{\"versions\":[");
    for (size_t i = 0; i < n; i++)
        l += (size_t)snprintf(body + l, sizeof body - l, "%s%lld", i ? "," : "", (long long)versions[i]);
    l += (size_t)snprintf(body + l, sizeof body - l, "]}");
    return admin_call(v, "POST", mount, op, path, body, l, what, NULL, err);
}

/* ---- addition for vks serve (docs/internals/serve.md) ---- */

vks_status vks_vault_token_revoke_self(struct vks_vault *v, struct vks_err *err)
{
    return admin_call(v, "POST", "auth/token", "revoke-self", "", NULL, 0, "token revoke-self (logout)", NULL,
                      err);
}
