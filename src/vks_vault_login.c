/* vks_vault_login: the userpass login of vks serve. Contract: vks_vault_login.h. */
#include <stdio.h>
#include <string.h>

#include "vks_http.h"
#include "vks_json.h"
#include "vks_vault_login.h"

bool vks_vault_userpass_name_ok(const char *u)
{
    size_t n = u ? strlen(u) : 0;
    if (n == 0 || n > VKS_USERPASS_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = u[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '@' || c == '-'))
            return false;
    }
    return true;
}

/* {"password":"..."} into a scratch buffer (wiped by the caller). */
static vks_status login_body(const vks_secret *pw, vks_scratch *body, struct vks_err *err)
{
    vks_status st = vks_scratch_open(2 * VKS_SECRET_MAX + 64, body, err);
    if (st != VKS_OK)
        return st;
    char *b = (char *)body->data;
    memcpy(b, "{\"password\":", 12);
    size_t k = vks_json_write_string(pw->data, pw->len, b + 12, body->cap - 14);
    if (k == 0)
        return vks_err_set(err, VKS_E_INVALID_INPUT, "password is too long");
    b[12 + k] = '}';
    body->len = 12 + k + 1;
    return VKS_OK;
}

static vks_status take_token(const struct vks_http_response *rs, vks_secret *token, struct vks_err *err)
{
    struct vks_json_span sp;
    if (vks_json_find(rs->body, rs->body_len, "auth.client_token", &sp, NULL) != VKS_OK ||
        sp.type != VKS_JSON_STRING)
        return vks_err_set(err, VKS_E_BAD_RESPONSE, "userpass login: no auth.client_token in Vault's answer");
    size_t need = vks_json_string_decoded_len(rs->body, &sp);
    if (need == 0 || need > VKS_SECRET_MAX)
        return vks_err_set(err, VKS_E_BAD_RESPONSE, "userpass login: unusable client_token length");
    vks_status st = vks_secret_alloc(need, token, err);
    if (st == VKS_OK)
        st = vks_json_string_decode(rs->body, &sp, token->data, token->cap, &token->len, err);
    if (st != VKS_OK)
        vks_secret_free(token);
    return st;
}

vks_status vks_vault_userpass_login(const struct vks_vault_config *cfg, const char *mount, const char *username,
                                    const vks_secret *password, vks_secret *token, struct vks_err *err)
{
    *token = VKS_SECRET_EMPTY;
    if (!vks_vault_userpass_name_ok(username))
        return vks_err_set(err, VKS_E_INVALID_INPUT, "username: 1-%d of letters, digits and . _ @ -",
                           VKS_USERPASS_NAME_MAX);
    if (password == NULL || password->len == 0)
        return vks_err_set(err, VKS_E_INVALID_INPUT, "password is required");
    char origin[300], url[700];
    vks_status st = vks_http_check_address(cfg->address ? cfg->address : "https://127.0.0.1:8200", cfg->allow_http,
                                           origin, sizeof origin, err);
    if (st != VKS_OK)
        return st;
    size_t ul = (size_t)snprintf(url, sizeof url, "%s/v1/auth/", origin);
    if (!vks_http_append_path(url, sizeof url, &ul, mount && *mount ? mount : "userpass") ||
        !vks_http_append_path(url, sizeof url, &ul, "/login/") || !vks_http_append_path(url, sizeof url, &ul, username))
        return vks_err_set(err, VKS_E_INVALID_INPUT, "userpass mount or username cannot be used in a path");
    struct vks_http_config hc = { .cacert = cfg->cacert, .capath = cfg->capath, .client_cert = cfg->client_cert,
                                  .client_key = cfg->client_key, .tls_server_name = cfg->tls_server_name,
                                  .skip_verify = cfg->skip_verify, .allow_http = cfg->allow_http, .max_retries = 0,
                                  .min_retry_wait_ms = 100, .max_retry_wait_ms = 200, .max_response_bytes = 65536 };
    struct vks_http *h = NULL;
    vks_scratch body = { 0 };
    st = vks_http_new(&hc, &h, err);
    if (st == VKS_OK)
        st = login_body(password, &body, err);
    if (st == VKS_OK) {
        struct vks_http_request rq = { .method = "POST", .url = url, .namespace_ = cfg->namespace_,
                                       .body = (const char *)body.data, .body_len = body.len,
                                       .deadline_ms = vks_http_now_ms() + (cfg->timeout_ms > 0 ? cfg->timeout_ms : 15000),
                                       .what = "userpass login" };
        struct vks_http_response rs = { 0 };
        struct vks_http_lease *lease = NULL;
        st = vks_http_do(h, &rq, &rs, &lease, err);
        if (st == VKS_OK && (rs.status == 400 || rs.status == 401 || rs.status == 403))
            st = vks_err_set(err, VKS_E_AUTH_FAILED, "userpass login refused by Vault (HTTP %ld): wrong username "
                             "or password", rs.status);
        else if (st == VKS_OK && rs.status != 200)
            st = vks_err_set(err, rs.status == 503 ? VKS_E_SEALED : VKS_E_UNAVAILABLE,
                             "userpass login: Vault answered HTTP %ld", rs.status);
        else if (st == VKS_OK)
            st = take_token(&rs, token, err);
        if (lease != NULL)
            vks_http_release(h, lease);
    }
    vks_scratch_close(&body);
    vks_http_free(h);
    return st;
}
