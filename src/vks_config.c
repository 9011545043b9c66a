/*
 * vks_config: options, their environment variables and their parsers (see vks_config.h).
 */
#include "vks_config.h"
#include "vks_file.h"
#include "vks_fork.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

enum opt_kind {
    OPT_ADDRESS, OPT_STRING, OPT_SECRET, OPT_BOOL, OPT_DURATION, OPT_RETRIES, OPT_SIZE, OPT_KV,
    OPT_AUTH, OPT_NAMESPACE, OPT_FORK,
};

struct opt {
    const char *name; /* setup field */
    const char *env;  /* environment variable, NULL when setup-only */
    enum opt_kind kind;
    size_t off;
};

#define OFF(f) offsetof(struct vks_config, f)

static const struct opt opts[] = {
    { "address", "VAULT_ADDR", OPT_ADDRESS, OFF(vault.address) },
    { "namespace", "VAULT_NAMESPACE", OPT_NAMESPACE, OFF(vault.namespace_) },
    { "token", "VAULT_TOKEN", OPT_SECRET, OFF(vault.token) },
    { "auth", "VKS_AUTH", OPT_AUTH, OFF(vault.auth) },
    { "approle_mount", "VKS_APPROLE_MOUNT", OPT_STRING, OFF(vault.approle_mount) },
    { "role_id", "VKS_APPROLE_ROLE_ID", OPT_STRING, OFF(vault.role_id) },
    { "secret_id", "VKS_APPROLE_SECRET_ID", OPT_SECRET, OFF(vault.secret_id) },
    { "secret_id_file", "VKS_APPROLE_SECRET_ID_FILE", OPT_STRING, OFF(vault.secret_id_file) },
    { "ca_cert", "VAULT_CACERT", OPT_STRING, OFF(vault.cacert) },
    { "ca_path", "VAULT_CAPATH", OPT_STRING, OFF(vault.capath) },
    { "client_cert", "VAULT_CLIENT_CERT", OPT_STRING, OFF(vault.client_cert) },
    { "client_key", "VAULT_CLIENT_KEY", OPT_STRING, OFF(vault.client_key) },
    { "tls_server_name", "VAULT_TLS_SERVER_NAME", OPT_STRING, OFF(vault.tls_server_name) },
    { "skip_verify", "VAULT_SKIP_VERIFY", OPT_BOOL, OFF(vault.skip_verify) },
    { "allow_http", "VKS_VAULT_ALLOW_HTTP", OPT_BOOL, OFF(vault.allow_http) },
    { "timeout", "VAULT_CLIENT_TIMEOUT", OPT_DURATION, OFF(vault.timeout_ms) },
    { "max_retries", "VAULT_MAX_RETRIES", OPT_RETRIES, OFF(vault.max_retries) },
    { "min_retry_wait", "VKS_MIN_RETRY_WAIT", OPT_DURATION, OFF(vault.min_retry_wait_ms) },
    { "max_retry_wait", "VKS_MAX_RETRY_WAIT", OPT_DURATION, OFF(vault.max_retry_wait_ms) },
    { "max_response_bytes", "VKS_MAX_RESPONSE_BYTES", OPT_SIZE, OFF(vault.max_response_bytes) },
    { "kv_version", "VKS_KV_VERSION", OPT_KV, OFF(kv_version) },
    { "require_encrypted", "VKS_REQUIRE_ENCRYPTED", OPT_BOOL, OFF(require_encrypted) },
    { "locked_bytes", "VKS_LOCKED_BYTES", OPT_SIZE, OFF(secmem.locked_bytes) },
    { "require_locked", "VKS_REQUIRE_LOCKED", OPT_BOOL, OFF(secmem.require_locked) },
    { "fork", "VKS_FORK", OPT_FORK, OFF(fork_mode) },
    { "reset_check_interval", "VKS_RESET_CHECK_INTERVAL", OPT_DURATION, OFF(reset_interval_ms) },
    { "reset_max_unverified", "VKS_RESET_MAX_UNVERIFIED", OPT_DURATION, OFF(reset_bound_ms) },
};
#define NOPTS (sizeof opts / sizeof opts[0])

static const char *opt_names[NOPTS + 1];

const char *const *vks_config_option_names(void)
{
    for (size_t i = 0; i < NOPTS; i++)
        opt_names[i] = opts[i].name;
    opt_names[NOPTS] = NULL;
    return opt_names;
}

void vks_config_defaults(struct vks_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->vault.auth = VKS_AUTH_TOKEN;
    cfg->vault.timeout_ms = 60000;
    cfg->vault.max_retries = 2;
    cfg->vault.min_retry_wait_ms = 1000;
    cfg->vault.max_retry_wait_ms = 1500;
    cfg->vault.max_response_bytes = 1024 * 1024;
    cfg->kv_version = 2;
    cfg->reset_interval_ms = 2000;
    cfg->reset_bound_ms = 30000;
}

void vks_config_clear(struct vks_config *cfg)
{
    if (cfg == NULL)
        return;
    struct vks_vault_config *v = &cfg->vault;
    free(v->address);
    free(v->namespace_);
    vks_secret_free(&v->token);
    free(v->approle_mount);
    free(v->role_id);
    free(v->secret_id_file);
    vks_secret_free(&v->secret_id);
    free(v->cacert);
    free(v->capath);
    free(v->client_cert);
    free(v->client_key);
    free(v->tls_server_name);
    free(cfg->token_source);
    memset(cfg, 0, sizeof *cfg);
}

/* ------------------------------------------------------------------ shared parsers */

vks_status vks_parse_bool(const struct vks_field *f, const char *what, bool *out, struct vks_err *err)
{
    if (f->type == VKS_FT_BOOLEAN) {
        *out = f->bval;
        return VKS_OK;
    }
    if (f->type == VKS_FT_STRING && f->len < 8) {
        static const char *const yes[] = { "1", "t", "T", "TRUE", "true", "True" };
        static const char *const no[] = { "0", "f", "F", "FALSE", "false", "False" };
        for (size_t i = 0; i < 6; i++) {
            if (f->len == strlen(yes[i]) && memcmp(f->str, yes[i], f->len) == 0) {
                *out = true;
                return VKS_OK;
            }
            if (f->len == strlen(no[i]) && memcmp(f->str, no[i], f->len) == 0) {
                *out = false;
                return VKS_OK;
            }
        }
    }
    return vks_err_set(err, VKS_E_CONFIG, "%s must be true or false (1, t, true, 0, f, false)", what);
}

vks_status vks_parse_duration_ms(const struct vks_field *f, const char *what, long *out_ms,
                                 struct vks_err *err)
{
    double secs;
    if (f->type == VKS_FT_INTEGER) {
        secs = (double)f->ival;
    } else if (f->type == VKS_FT_NUMBER) {
        secs = f->dval;
    } else if (f->type == VKS_FT_STRING && f->len > 0 && f->len < 32 && !vks_has_control(f->str, f->len)) {
        char buf[32];
        memcpy(buf, f->str, f->len);
        buf[f->len] = '\0';
        char *end = NULL;
        errno = 0;
        double v = strtod(buf, &end);
        if (end == buf || errno != 0 || buf[0] == '-' || buf[0] == '+' || buf[0] == ' ')
            goto bad;
        double mult;
        if (*end == '\0' || strcmp(end, "s") == 0)
            mult = 1;
        else if (strcmp(end, "ms") == 0)
            mult = 0.001;
        else if (strcmp(end, "m") == 0)
            mult = 60;
        else if (strcmp(end, "h") == 0)
            mult = 3600;
        else
            goto bad;
        secs = v * mult;
    } else {
        goto bad;
    }
    if (!isfinite(secs) || secs < 0 || secs > 86400.0 * 365)
        return vks_err_set(err, VKS_E_CONFIG, "%s must be between 0 and one year", what);
    *out_ms = (long)(secs * 1000.0 + 0.5);
    return VKS_OK;
bad:
    return vks_err_set(err, VKS_E_CONFIG,
                       "%s must be a duration: seconds as a number, or a string like \"30s\", "
                       "\"500ms\", \"2m\" (got a %s)", what, vks_field_type_name(f));
}

vks_status vks_parse_size(const struct vks_field *f, const char *what, size_t *out, struct vks_err *err)
{
    if (f->type == VKS_FT_INTEGER) {
        if (f->ival < 0)
            goto bad;
        *out = (size_t)f->ival;
        return VKS_OK;
    }
    if (f->type == VKS_FT_STRING && f->len > 0 && f->len < 24) {
        unsigned long long v = 0;
        size_t i = 0;
        for (; i < f->len && f->str[i] >= '0' && f->str[i] <= '9'; i++) {
            if (v > (1ULL << 50))
                goto bad;
            v = v * 10 + (unsigned)(f->str[i] - '0');
        }
        if (i == 0)
            goto bad;
        if (i < f->len) {
            if (i + 1 != f->len)
                goto bad;
            switch (f->str[i]) {
            case 'k': case 'K': v <<= 10; break;
            case 'm': case 'M': v <<= 20; break;
            case 'g': case 'G': v <<= 30; break;
            default: goto bad;
            }
        }
        *out = (size_t)v;
        return VKS_OK;
    }
bad:
    return vks_err_set(err, VKS_E_CONFIG, "%s must be a size in bytes (optional K, M or G suffix)", what);
}

/* ------------------------------------------------------------------ one option */

static vks_status set_string(char **dst, const struct vks_field *f, const char *what, bool allow_empty,
                             struct vks_err *err)
{
    if (f->type != VKS_FT_STRING)
        return vks_err_set(err, VKS_E_CONFIG, "%s must be a string, not a %s", what, vks_field_type_name(f));
    if ((f->len == 0 && !allow_empty) || f->len > VKS_PATH_MAX || memchr(f->str, '\0', f->len) != NULL ||
        vks_has_control(f->str, f->len))
        return vks_err_set(err, VKS_E_CONFIG, "%s must be a non-empty printable string of at most %d bytes",
                           what, VKS_PATH_MAX);
    char *p = malloc(f->len + 1);
    if (p == NULL)
        return vks_err_set(err, VKS_E_NOMEM, "out of memory for %s", what);
    memcpy(p, f->str, f->len);
    p[f->len] = '\0';
    free(*dst);
    *dst = p;
    return VKS_OK;
}

static vks_status apply(struct vks_config *cfg, const struct opt *o, const struct vks_field *f,
                        const char *what, struct vks_err *err)
{
    char *base = (char *)cfg;
    vks_status st;
    switch (o->kind) {
    case OPT_ADDRESS: {
        if (f->type != VKS_FT_STRING)
            return vks_err_set(err, VKS_E_CONFIG, "%s must be a string, not a %s", what, vks_field_type_name(f));
        struct vks_err ae;
        vks_err_clear(&ae);
        if (vks_address_validate(f->str, f->len, what, &ae) != VKS_OK)
            return vks_err_set(err, VKS_E_CONFIG, "%s", ae.msg);
        char **dst = (char **)(base + o->off);
        if ((st = set_string(dst, f, what, false, err)) != VKS_OK)
            return st;
        size_t n = strlen(*dst);
        while (n > 8 && (*dst)[n - 1] == '/')
            (*dst)[--n] = '\0';
        return VKS_OK;
    }
    case OPT_NAMESPACE:
        return set_string((char **)(base + o->off), f, what, true, err);
    case OPT_STRING:
        return set_string((char **)(base + o->off), f, what, false, err);
    case OPT_SECRET: {
        if (f->type != VKS_FT_STRING)
            return vks_err_set(err, VKS_E_CONFIG, "%s must be a string, not a %s", what, vks_field_type_name(f));
        if (f->len == 0 || f->len > VKS_SECRET_MAX || memchr(f->str, '\0', f->len) != NULL ||
            vks_has_control(f->str, f->len))
            return vks_err_set(err, VKS_E_CONFIG, "%s must be 1 to %d printable bytes", what, VKS_SECRET_MAX);
        vks_secret *dst = (vks_secret *)(base + o->off);
        vks_secret tmp = VKS_SECRET_EMPTY;
        if ((st = vks_secret_dup(f->str, f->len, &tmp, err)) != VKS_OK)
            return vks_err_set(err, st, "%s could not be stored in locked memory", what);
        vks_secret_free(dst);
        *dst = tmp;
        if (o->off == OFF(vault.token)) {
            free(cfg->token_source);
            cfg->token_source = strdup(strcmp(what, "VAULT_TOKEN") == 0 ? "VAULT_TOKEN" : "setup");
        }
        return VKS_OK;
    }
    case OPT_BOOL:
        return vks_parse_bool(f, what, (bool *)(base + o->off), err);
    case OPT_DURATION:
        return vks_parse_duration_ms(f, what, (long *)(base + o->off), err);
    case OPT_RETRIES: {
        long long v = -1;
        if (f->type == VKS_FT_INTEGER)
            v = f->ival;
        else if (f->type == VKS_FT_STRING && f->len > 0 && f->len < 4) {
            v = 0;
            for (size_t i = 0; i < f->len; i++) {
                if (f->str[i] < '0' || f->str[i] > '9') {
                    v = -1;
                    break;
                }
                v = v * 10 + (f->str[i] - '0');
            }
        }
        if (v < 0 || v > 100)
            return vks_err_set(err, VKS_E_CONFIG, "%s must be a whole number from 0 to 100", what);
        *(int *)(base + o->off) = (int)v;
        return VKS_OK;
    }
    case OPT_SIZE:
        return vks_parse_size(f, what, (size_t *)(base + o->off), err);
    case OPT_KV:
        if (vks_kv_version_parse(f, (int *)(base + o->off), err) != VKS_OK)
            return vks_err_set(err, VKS_E_CONFIG, "%s must be 1, 2 or \"auto\"", what);
        return VKS_OK;
    case OPT_AUTH:
        if (f->type == VKS_FT_STRING && f->len == 5 && memcmp(f->str, "token", 5) == 0)
            cfg->vault.auth = VKS_AUTH_TOKEN;
        else if (f->type == VKS_FT_STRING && f->len == 7 && memcmp(f->str, "approle", 7) == 0)
            cfg->vault.auth = VKS_AUTH_APPROLE;
        else
            return vks_err_set(err, VKS_E_CONFIG, "%s must be \"token\" or \"approle\"", what);
        cfg->auth_explicit = true;
        return VKS_OK;
    case OPT_FORK:
        if (f->type != VKS_FT_STRING)
            return vks_err_set(err, VKS_E_CONFIG, "%s must be \"inherit\" or \"strict\"", what);
        return vks_fork_mode_parse(f->str, f->len, what, &cfg->fork_mode, err);
    }
    return vks_err_set(err, VKS_E_INTERNAL, "unhandled option kind for %s", what);
}

vks_status vks_config_set(struct vks_config *cfg, const struct vks_field *f, struct vks_err *err)
{
    if (f == NULL || f->name == NULL)
        return vks_err_set(err, VKS_E_INVALID_ARG, "setup option without a name");
    for (size_t i = 0; i < NOPTS; i++)
        if (strcmp(opts[i].name, f->name) == 0) {
            char what[80];
            snprintf(what, sizeof what, "setup option %s", opts[i].name);
            return apply(cfg, &opts[i], f, what, err);
        }
    if (strlen(f->name) > 64 || vks_has_control(f->name, strlen(f->name)))
        return vks_err_set(err, VKS_E_CONFIG, "unknown setup option");
    return vks_err_set(err, VKS_E_CONFIG, "unknown setup option %s", f->name);
}

/* ------------------------------------------------------------------ environment */

/* Reads ~/.vault-token (trimmed, like Vault's token helper) straight into an arena slot. */
static vks_status read_token_file(struct vks_config *cfg, struct vks_err *err)
{
    const char *home = getenv("HOME");
    if (home == NULL || home[0] == '\0')
        return VKS_OK;
    char path[VKS_PATH_MAX];
    if ((size_t)snprintf(path, sizeof path, "%s/.vault-token", home) >= sizeof path)
        return VKS_OK;
    const struct vks_file_opts fo = { .what = "token file ~/.vault-token", .code = VKS_E_CONFIG,
                                      .max_bytes = VKS_SECRET_MAX, .missing_ok = true };
    int fd = -1;
    size_t size = 0;
    vks_status st = vks_file_open(path, &fo, &fd, &size, err);
    if (st != VKS_OK || fd < 0)
        return st;
    vks_secret tok = VKS_SECRET_EMPTY;
    if (size == 0)
        goto out;
    if ((st = vks_secret_alloc(size, &tok, err)) != VKS_OK)
        goto out;
    size_t got = 0;
    bool more = false;
    if ((st = vks_file_read_fd(fd, tok.data, tok.cap, &got, &more, path, &fo, err)) != VKS_OK)
        goto out;
    if (more) {
        st = vks_err_set(err, VKS_E_CONFIG, "token file ~/.vault-token \"%s\" changed size while read", path);
        goto out;
    }
    size_t b = 0, e = got;
    while (b < e && (tok.data[b] == ' ' || tok.data[b] == '\t' || tok.data[b] == '\n' || tok.data[b] == '\r'))
        b++;
    while (e > b && (tok.data[e - 1] == ' ' || tok.data[e - 1] == '\t' || tok.data[e - 1] == '\n' ||
                     tok.data[e - 1] == '\r'))
        e--;
    if (e == b)
        goto out;
    memmove(tok.data, tok.data + b, e - b);
    vks_wipe(tok.data + (e - b), tok.cap - (e - b));
    tok.len = e - b;
    vks_secret_free(&cfg->vault.token);
    cfg->vault.token = tok;
    tok = VKS_SECRET_EMPTY;
    free(cfg->token_source);
    cfg->token_source = strdup("~/.vault-token");
out:
    vks_secret_free(&tok);
    close(fd);
    return st;
}

vks_status vks_config_from_env(struct vks_config *cfg, struct vks_err *err)
{
    vks_config_defaults(cfg);
    vks_status st;
    for (size_t i = 0; i < NOPTS; i++) {
        if (opts[i].env == NULL)
            continue;
        const char *v = getenv(opts[i].env);
        if (v == NULL || v[0] == '\0') /* like Vault's client: empty means unset */
            continue;
        struct vks_field f = { .name = opts[i].name, .type = VKS_FT_STRING, .str = v, .len = strlen(v) };
        if ((st = apply(cfg, &opts[i], &f, opts[i].env, err)) != VKS_OK) {
            if (st == VKS_E_CONFIG && err != NULL && strstr(err->msg, opts[i].env) == NULL)
                vks_err_set(err, VKS_E_CONFIG, "environment variable %s is invalid", opts[i].env);
            vks_config_clear(cfg);
            return st;
        }
    }
    if (cfg->vault.token.data == NULL && (st = read_token_file(cfg, err)) != VKS_OK) {
        vks_config_clear(cfg);
        return st;
    }
    return VKS_OK;
}

/* ------------------------------------------------------------------ whole config */

vks_status vks_config_finish(struct vks_config *cfg, struct vks_err *err)
{
    struct vks_vault_config *v = &cfg->vault;
    if (!cfg->auth_explicit)
        v->auth = v->role_id != NULL ? VKS_AUTH_APPROLE : VKS_AUTH_TOKEN;
    if (v->auth == VKS_AUTH_APPROLE && v->role_id == NULL)
        return vks_err_set(err, VKS_E_CONFIG,
                           "auth \"approle\" needs a role_id (setup option role_id or VKS_APPROLE_ROLE_ID)");
    if (v->auth == VKS_AUTH_APPROLE && v->approle_mount == NULL &&
        (v->approle_mount = strdup("approle")) == NULL)
        return vks_err_set(err, VKS_E_NOMEM, "out of memory");
    if (v->address != NULL && strncasecmp(v->address, "http://", 7) == 0 && !v->allow_http &&
        !vks_address_is_loopback(v->address))
        return vks_err_set(err, VKS_E_CONFIG,
                           "Vault address %s is plain http to a host that is not loopback: use https, or "
                           "set allow_http (VKS_VAULT_ALLOW_HTTP=true) if you really mean it", v->address);
    if ((v->client_cert == NULL) != (v->client_key == NULL))
        return vks_err_set(err, VKS_E_CONFIG,
                           "both client_cert and client_key (VAULT_CLIENT_CERT, VAULT_CLIENT_KEY) must be given");
    if (v->min_retry_wait_ms > v->max_retry_wait_ms)
        return vks_err_set(err, VKS_E_CONFIG, "min_retry_wait must not exceed max_retry_wait");
    if (v->timeout_ms <= 0)
        return vks_err_set(err, VKS_E_CONFIG, "timeout must be greater than 0");
    if (v->max_response_bytes < 1024)
        return vks_err_set(err, VKS_E_CONFIG, "max_response_bytes must be at least 1024");
    return VKS_OK;
}

vks_status vks_config_check_files(const struct vks_config *cfg, struct vks_err *err)
{
    const struct vks_vault_config *v = &cfg->vault;
    struct { const char *opt, *path; bool dir; size_t cap; } items[] = {
        { "ca_cert", v->cacert, false, 64u << 20 },   { "ca_path", v->capath, true, 0 },
        { "client_cert", v->client_cert, false, 1u << 20 }, { "client_key", v->client_key, false, 1u << 20 },
        { "secret_id_file", v->secret_id_file, false, VKS_SECRET_MAX },
    };
    for (size_t i = 0; i < sizeof items / sizeof items[0]; i++) {
        if (items[i].path == NULL)
            continue;
        if (!items[i].dir) {
            /* opened the way they will be read (curl and OpenSSL would block on a FIFO) */
            const struct vks_file_opts fo = { .what = items[i].opt, .code = VKS_E_CONFIG,
                                              .max_bytes = items[i].cap };
            int fd = -1;
            vks_status st = vks_file_open(items[i].path, &fo, &fd, NULL, err);
            if (st != VKS_OK)
                return st;
            close(fd);
            continue;
        }
        struct stat sb;
        if (stat(items[i].path, &sb) != 0)
            return vks_err_set(err, VKS_E_CONFIG, "%s \"%s\": %s", items[i].opt, items[i].path, strerror(errno));
        if (items[i].dir ? !S_ISDIR(sb.st_mode) : !S_ISREG(sb.st_mode))
            return vks_err_set(err, VKS_E_CONFIG, "%s \"%s\" is not a %s", items[i].opt, items[i].path,
                               items[i].dir ? "directory" : "regular file");
        if (access(items[i].path, R_OK | (items[i].dir ? X_OK : 0)) != 0)
            return vks_err_set(err, VKS_E_CONFIG, "%s \"%s\": %s", items[i].opt, items[i].path, strerror(errno));
    }
    return VKS_OK;
}

static bool str_eq(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

static bool secret_eq(const vks_secret *a, const vks_secret *b)
{
    if ((a->data == NULL) != (b->data == NULL))
        return false;
    if (a->data == NULL)
        return true;
    if (a->len != b->len)
        return false;
    return vks_ct_equal(a->data, b->data, a->len);
}

bool vks_config_equal(const struct vks_config *a, const struct vks_config *b)
{
    const struct vks_vault_config *x = &a->vault, *y = &b->vault;
    bool same = str_eq(x->address, y->address) && str_eq(x->namespace_, y->namespace_) &&
                x->auth == y->auth && str_eq(x->approle_mount, y->approle_mount) &&
                str_eq(x->role_id, y->role_id) && str_eq(x->secret_id_file, y->secret_id_file) &&
                str_eq(x->cacert, y->cacert) && str_eq(x->capath, y->capath) &&
                str_eq(x->client_cert, y->client_cert) && str_eq(x->client_key, y->client_key) &&
                str_eq(x->tls_server_name, y->tls_server_name) && x->skip_verify == y->skip_verify &&
                x->allow_http == y->allow_http && x->timeout_ms == y->timeout_ms &&
                x->max_retries == y->max_retries && x->min_retry_wait_ms == y->min_retry_wait_ms &&
                x->max_retry_wait_ms == y->max_retry_wait_ms &&
                x->max_response_bytes == y->max_response_bytes && a->kv_version == b->kv_version &&
                a->require_encrypted == b->require_encrypted && a->fork_mode == b->fork_mode &&
                a->secmem.locked_bytes == b->secmem.locked_bytes &&
                a->secmem.require_locked == b->secmem.require_locked &&
                a->reset_interval_ms == b->reset_interval_ms && a->reset_bound_ms == b->reset_bound_ms;
    /* evaluate both secret comparisons regardless of the rest */
    bool tok = secret_eq(&x->token, &y->token);
    bool sid = secret_eq(&x->secret_id, &y->secret_id);
    return same && tok && sid;
}

static vks_status dup_str(char **dst, const char *src)
{
    *dst = NULL;
    if (src == NULL)
        return VKS_OK;
    *dst = strdup(src);
    return *dst != NULL ? VKS_OK : VKS_E_NOMEM;
}

vks_status vks_config_copy(const struct vks_config *src, struct vks_config *out, struct vks_err *err)
{
    *out = *src;
    struct vks_vault_config *o = &out->vault;
    const struct vks_vault_config *s = &src->vault;
    o->token = VKS_SECRET_EMPTY;
    o->secret_id = VKS_SECRET_EMPTY;
    char **dsts[] = { &o->address, &o->namespace_, &o->approle_mount, &o->role_id, &o->secret_id_file,
                      &o->cacert, &o->capath, &o->client_cert, &o->client_key, &o->tls_server_name,
                      &out->token_source };
    const char *srcs[] = { s->address, s->namespace_, s->approle_mount, s->role_id, s->secret_id_file,
                           s->cacert, s->capath, s->client_cert, s->client_key, s->tls_server_name,
                           src->token_source };
    for (size_t i = 0; i < sizeof dsts / sizeof dsts[0]; i++)
        *dsts[i] = NULL;
    vks_status st = VKS_OK;
    for (size_t i = 0; i < sizeof dsts / sizeof dsts[0]; i++)
        if (dup_str(dsts[i], srcs[i]) != VKS_OK) {
            st = vks_err_set(err, VKS_E_NOMEM, "out of memory copying the configuration");
            goto fail;
        }
    if (s->token.data != NULL && (st = vks_secret_dup(s->token.data, s->token.len, &o->token, err)) != VKS_OK)
        goto fail;
    if (s->secret_id.data != NULL &&
        (st = vks_secret_dup(s->secret_id.data, s->secret_id.len, &o->secret_id, err)) != VKS_OK)
        goto fail;
    return VKS_OK;
fail:
    vks_config_clear(out);
    return st;
}
