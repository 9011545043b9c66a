/*
 * vks-serve configuration: one TOML file (common/vks_toml.h, as the agent). Every key is known;
 * an unknown key, a wrong type or a bad value is an error naming file, line and key (fail closed).
 * The file holds no secret: the certificate's key is named by path, operators bring their tokens.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve.h"
#include "vks_toml.h"

static int bad(char *err, size_t n, const char *src, const struct vks_toml_node *k, const char *what)
{
    snprintf(err, n, "%s:%d: %s: %s", src, k ? k->line : 0, k && k->key ? k->key : "?", what);
    return -1;
}

static int take_str(const struct vks_toml_node *k, char **dst, const char *src, char *err, size_t n)
{
    if (k->type != VKS_TOML_STRING || k->len == 0 || strlen(k->str) != k->len)
        return bad(err, n, src, k, "must be a non-empty string");
    free(*dst);
    *dst = strdup(k->str);
    return 0;
}

static int take_int(const struct vks_toml_node *k, int lo, int hi, int *dst, const char *src, char *err, size_t n)
{
    if (k->type != VKS_TOML_INTEGER || k->ival < lo || k->ival > hi) {
        char m[80];
        snprintf(m, sizeof m, "must be an integer %d-%d", lo, hi);
        return bad(err, n, src, k, m);
    }
    *dst = (int)k->ival;
    return 0;
}

static int listen_addr(const struct vks_toml_node *k, struct sv_conf *c, const char *src, char *err, size_t n)
{
    char *s = NULL;
    if (take_str(k, &s, src, err, n) != 0)
        return -1;
    char *colon = strrchr(s, ':');
    char *end = NULL;
    long port = colon ? strtol(colon + 1, &end, 10) : 0;
    if (!colon || colon == s || !end || *end || port < 1 || port > 65535) {
        free(s);
        return bad(err, n, src, k, "must be \"HOST:PORT\" (port 1-65535)");
    }
    *colon = '\0';
    free(c->host);
    c->host = s;
    c->port = (int)port;
    return 0;
}

static int vault_table(const struct vks_toml_node *t, struct sv_conf *c, const char *src, char *err, size_t n)
{
    for (size_t i = 0; i < t->n; i++) {
        const struct vks_toml_node *k = &t->items[i];
        int r;
        if (!strcmp(k->key, "address"))
            r = take_str(k, &c->vault.address, src, err, n);
        else if (!strcmp(k->key, "ca_cert"))
            r = take_str(k, &c->vault.cacert, src, err, n);
        else if (!strcmp(k->key, "namespace"))
            r = take_str(k, &c->vault.namespace_, src, err, n);
        else if (!strcmp(k->key, "timeout_seconds")) {
            int s = 0;
            r = take_int(k, 1, 300, &s, src, err, n);
            c->vault.timeout_ms = s * 1000L;
        } else
            r = bad(err, n, src, k, "unknown key in [vault] (address, ca_cert, namespace, timeout_seconds)");
        if (r != 0)
            return -1;
    }
    return 0;
}

/* [audit] file/key_file: the same sink and key as `vks cred` (docs/audit.md), set as the
 * environment the core's audit reads. */
static int audit_table(const struct vks_toml_node *t, const char *src, char *err, size_t n)
{
    for (size_t i = 0; i < t->n; i++) {
        const struct vks_toml_node *k = &t->items[i];
        const char *var = !strcmp(k->key, "file") ? "VKS_AUDIT_FILE" : !strcmp(k->key, "key_file") ? "VKS_AUDIT_KEY_FILE" : NULL;
        if (var == NULL)
            return bad(err, n, src, k, "unknown key in [audit] (file, key_file)");
        char *v = NULL;
        if (take_str(k, &v, src, err, n) != 0)
            return -1;
        setenv(var, v, 1);
        free(v);
    }
    return 0;
}

static int top_key(const struct vks_toml_node *k, struct sv_conf *c, const char *src, char *err, size_t n)
{
    int mb = 0;
    if (!strcmp(k->key, "listen"))
        return listen_addr(k, c, src, err, n);
    if (!strcmp(k->key, "tls_cert"))
        return take_str(k, &c->tls_cert, src, err, n);
    if (!strcmp(k->key, "tls_key"))
        return take_str(k, &c->tls_key, src, err, n);
    if (!strcmp(k->key, "static_dir"))
        return take_str(k, &c->static_dir, src, err, n);
    if (!strcmp(k->key, "openapi"))
        return take_str(k, &c->openapi, src, err, n);
    if (!strcmp(k->key, "mount"))
        return take_str(k, &c->mount, src, err, n);
    if (!strcmp(k->key, "prefix"))
        return take_str(k, &c->prefix, src, err, n);
    if (!strcmp(k->key, "userpass_mount"))
        return take_str(k, &c->userpass_mount, src, err, n);
    if (!strcmp(k->key, "session_idle_seconds"))
        return take_int(k, 10, 86400, &c->session_idle, src, err, n);
    if (!strcmp(k->key, "session_max_seconds"))
        return take_int(k, 10, 7 * 86400, &c->session_max, src, err, n);
    if (!strcmp(k->key, "login_max_failures"))
        return take_int(k, 1, 1000, &c->login_max_failures, src, err, n);
    if (!strcmp(k->key, "login_lockout_seconds"))
        return take_int(k, 1, 86400, &c->login_lockout, src, err, n);
    if (!strcmp(k->key, "rotate_set_hook"))
        return take_str(k, &c->rotate_set_hook, src, err, n);
    if (!strcmp(k->key, "rotate_cafile"))
        return take_str(k, &c->rotate_cafile, src, err, n);
    if (!strcmp(k->key, "rotate_ehlo"))
        return take_str(k, &c->rotate_ehlo, src, err, n);
    if (!strcmp(k->key, "totp_file"))
        return take_str(k, &c->totp_file, src, err, n);
    if (!strcmp(k->key, "totp_required")) {
        if (k->type != VKS_TOML_BOOL)
            return bad(err, n, src, k, "must be true or false");
        c->totp_required = k->bval;
        return 0;
    }
    if (!strcmp(k->key, "reveal_seconds"))
        return take_int(k, 1, 300, &c->reveal_seconds, src, err, n);
    if (!strcmp(k->key, "max_body_bytes")) {
        if (take_int(k, 1024, 1 << 20, &mb, src, err, n) != 0)
            return -1;
        c->max_body = (size_t)mb;
        return 0;
    }
    if (!strcmp(k->key, "vault") && k->type == VKS_TOML_TABLE)
        return vault_table(k, c, src, err, n);
    if (!strcmp(k->key, "audit") && k->type == VKS_TOML_TABLE)
        return audit_table(k, src, err, n);
    return bad(err, n, src, k, "unknown key (see docs/serve.md \"Configuration\")");
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return NULL;
    char *buf = malloc(1 << 20);
    size_t n = buf ? fread(buf, 1, (1 << 20) - 1, f) : 0;
    bool more = buf && !feof(f);
    fclose(f);
    if (!buf || more) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

int sv_conf_load(const char *path, struct sv_conf *c, char *err, size_t n)
{
    memset(c, 0, sizeof *c);
    struct vks_err e;
    if (vks_vault_config_from_env(&c->vault, &e) != VKS_OK) {
        snprintf(err, n, "%s", e.msg);
        return -1;
    }
    vks_secret_free(&c->vault.token); /* never the environment's token: each operator logs in */
    c->vault.max_retries = 0;
    c->session_idle = 900;
    c->session_max = 8 * 3600;
    c->login_max_failures = 5;
    c->login_lockout = 1800; /* PCI DSS 8.3.4: at least 30 minutes */
    c->max_body = 65536;
    c->reveal_seconds = 30;
    size_t len = 0;
    char *text = read_all(path, &len);
    if (!text) {
        snprintf(err, n, "%s: cannot read (missing, unreadable or over 1 MiB)", path);
        return -1;
    }
    struct vks_toml_node *root = NULL;
    int r = vks_toml_parse(text, len, path, &root, err, n);
    free(text);
    for (size_t i = 0; r == 0 && i < root->n; i++)
        r = top_key(&root->items[i], c, path, err, n);
    vks_toml_free(root);
    if (r == 0 && (!c->host || !c->tls_cert || !c->tls_key)) {
        snprintf(err, n, "%s: listen, tls_cert and tls_key are required (HTTPS only)", path);
        r = -1;
    }
    if (r == 0 && !c->static_dir)
        c->static_dir = strdup("/usr/share/vault-keysource/web"); /* where make install / the .deb put it */
    if (r == 0 && !c->openapi) { /* installed beside the static files */
        size_t l = strlen(c->static_dir) + 16;
        if ((c->openapi = malloc(l)) != NULL)
            snprintf(c->openapi, l, "%s/openapi.json", c->static_dir);
    }
    return r;
}

void sv_conf_free(struct sv_conf *c)
{
    free(c->host);
    free(c->tls_cert);
    free(c->tls_key);
    free(c->static_dir);
    free(c->openapi);
    free(c->mount);
    free(c->prefix);
    free(c->userpass_mount);
    free(c->rotate_set_hook);
    free(c->rotate_cafile);
    free(c->rotate_ehlo);
    free(c->totp_file);
    vks_vault_config_clear(&c->vault);
    memset(c, 0, sizeof *c);
}
