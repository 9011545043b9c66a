/*
 * vks-serve API: routing under /api/v1/, and the endpoints that are not about one credential:
 * health, login, logout, session, the OpenAPI document. Login: the operator's Vault token, or
 * userpass; the token is checked with lookup-self (the identity every audit event names) and then
 * kept only in the session's vks_vault client. Loop thread only.
 */
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vks_evbuf.h"
#include "serve.h"
#include "vks_json.h"
#include "vks_vault_login.h"

static void health(struct sv_req *r)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "status", json_object_new_string("ok"));
    json_object_object_add(o, "vault_addr", json_object_new_string(sv_cfg->vault.address ? sv_cfg->vault.address : ""));
    json_object_object_add(o, "mount", json_object_new_string(sv_cfg->mount ? sv_cfg->mount : VKS_CRED_DEFAULT_MOUNT));
    json_object_object_add(o, "prefix", json_object_new_string(sv_cfg->prefix ? sv_cfg->prefix : VKS_CRED_DEFAULT_PREFIX));
    sv_send_json(r, 200, o, true);
}

static json_object *session_json(const struct sv_session *s)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "operator", json_object_new_string(s->operator_name));
    json_object_object_add(o, "csrf_token", json_object_new_string(s->csrf));
    json_object_object_add(o, "idle_timeout", json_object_new_int(sv_cfg->session_idle));
    json_object_object_add(o, "expires_in", json_object_new_int64(sv_cfg->session_max - (s->last - s->created)));
    return o;
}

/* A secret string field of the (wiped) body into an arena slot. */
static vks_status body_secret(const char *buf, size_t len, const char *key, vks_secret *out, struct vks_err *e)
{
    struct vks_json_span sp;
    *out = VKS_SECRET_EMPTY;
    if (vks_json_find(buf, len, key, &sp, NULL) != VKS_OK || sp.type != VKS_JSON_STRING)
        return vks_err_set(e, VKS_E_INVALID_INPUT, "%s is required (a string)", key);
    size_t need = vks_json_string_decoded_len(buf, &sp);
    if (need == 0 || need > 1024)
        return vks_err_set(e, VKS_E_INVALID_INPUT, "%s must be 1-1024 characters", key);
    vks_status st = vks_secret_alloc(need, out, e);
    if (st == VKS_OK)
        st = vks_json_string_decode(buf, &sp, out->data, out->cap, &out->len, e);
    if (st != VKS_OK)
        vks_secret_free(out);
    return st;
}

/* Reads the login body into scratch (wiping libevent's copy) and obtains the operator's token. */
static vks_status login_token(struct sv_req *r, const vks_scratch *b, char *user, size_t ucap, vks_secret *tok,
                              const char **field, struct vks_err *e)
{
    const char *buf = (const char *)b->data;
    struct vks_json_span sp;
    *field = "method";
    if (vks_json_find(buf, b->len, "method", &sp, NULL) != VKS_OK || sp.type != VKS_JSON_STRING)
        return vks_err_set(e, VKS_E_INVALID_INPUT, "method is required: \"token\" or \"userpass\"");
    if (vks_json_string_equals(buf, &sp, "token")) {
        *field = "token";
        return body_secret(buf, b->len, "token", tok, e);
    }
    if (!vks_json_string_equals(buf, &sp, "userpass"))
        return vks_err_set(e, VKS_E_INVALID_INPUT, "method must be \"token\" or \"userpass\"");
    *field = "username";
    size_t ul = 0;
    if (vks_json_find(buf, b->len, "username", &sp, NULL) != VKS_OK || sp.type != VKS_JSON_STRING ||
        vks_json_string_decoded_len(buf, &sp) >= ucap ||
        vks_json_string_decode(buf, &sp, (unsigned char *)user, ucap - 1, &ul, NULL) != VKS_OK)
        return vks_err_set(e, VKS_E_INVALID_INPUT, "username is required (a string of at most %zu)", ucap - 1);
    user[ul] = '\0';
    if (!vks_vault_userpass_name_ok(user))
        return vks_err_set(e, VKS_E_INVALID_INPUT, "username: letters, digits and . _ @ - only");
    *field = "password";
    vks_secret pw;
    vks_status st = body_secret(buf, b->len, "password", &pw, e);
    if (st != VKS_OK)
        return st;
    *field = NULL;
    (void)r;
    st = vks_vault_userpass_login(&sv_cfg->vault, sv_cfg->userpass_mount, user, &pw, tok, e);
    vks_secret_free(&pw);
    return st;
}

static bool is_object(const char *buf, size_t len)
{
    struct vks_json_query q = { .npath = 0 };
    return len > 0 && vks_json_scan(buf, len, &q, 1, "request body", NULL) == VKS_OK && q.found.type == VKS_JSON_OBJECT;
}

static bool read_body_scratch(struct sv_req *r, vks_scratch *b)
{
    struct evkeyvalq *h = evhttp_request_get_input_headers(r->req);
    const char *ct = evhttp_find_header(h, "Content-Type");
    struct evbuffer *in = evhttp_request_get_input_buffer(r->req);
    size_t n = evbuffer_get_length(in);
    struct vks_err e;
    bool ok = ct && !strncmp(ct, "application/json", 16) && vks_scratch_open(n + 1, b, &e) == VKS_OK;
    size_t got = vks_evbuffer_take_wiped(in, ok ? b->data : NULL, ok ? n : 0);
    if (ok)
        b->len = got;
    if (!ct || strncmp(ct, "application/json", 16) != 0)
        sv_send_error(r, 415, "unsupported_media_type", NULL, "the body must be JSON (Content-Type: application/json)");
    else if (!ok)
        sv_send_error(r, 503, "nomem", NULL, "no secure memory for the request");
    else if (!is_object((const char *)b->data, b->len)) {
        sv_send_error(r, 400, "malformed_json", "body", "the body is not one JSON object");
        ok = false;
    }
    return ok;
}

static void login(struct sv_req *r)
{
    vks_scratch b = { 0 };
    if (!read_body_scratch(r, &b)) {
        vks_scratch_close(&b);
        return;
    }
    char user[VKS_USERPASS_NAME_MAX + 2] = "";
    struct vks_err e;
    vks_err_clear(&e);
    /* the username (if any) is known before the wait check: both the address and the name count */
    struct vks_json_span sp;
    if (vks_json_find((const char *)b.data, b.len, "username", &sp, NULL) == VKS_OK && sp.type == VKS_JSON_STRING) {
        size_t ul = 0;
        if (vks_json_string_decoded_len((const char *)b.data, &sp) < sizeof user - 1 &&
            vks_json_string_decode((const char *)b.data, &sp, (unsigned char *)user, sizeof user - 1, &ul, NULL) == VKS_OK)
            user[ul] = '\0';
    }
    int wait = sv_login_wait(r->addr, user, r->now);
    if (wait > 0) {
        vks_scratch_close(&b);
        sv_audit(r, "login", VKS_E_PERMISSION_DENIED, user[0] ? user : NULL, "refused: locked out after failed logins");
        char ra[16];
        snprintf(ra, sizeof ra, "%d", wait);
        evhttp_add_header(evhttp_request_get_output_headers(r->req), "Retry-After", ra);
        sv_send_error(r, 429, "locked_out", NULL, "too many failed logins: try again in %d s", wait);
        return;
    }
    vks_secret tok = VKS_SECRET_EMPTY;
    const char *field = NULL;
    vks_status st = login_token(r, &b, user, sizeof user, &tok, &field, &e);
    vks_scratch_close(&b);
    struct vks_vault *v = NULL;
    char name[128] = "", acc[64] = "";
    if (st == VKS_OK) {
        struct vks_vault_config c = sv_cfg->vault;
        c.token = tok;
        st = vks_vault_new(&c, &v, &e);
    }
    if (st == VKS_OK)
        st = vks_vault_token_identity(v, name, sizeof name, acc, sizeof acc, &e);
    if (st != VKS_OK)
        vks_secret_free(&tok);
    if (st == VKS_E_INVALID_INPUT) {
        vks_vault_free(v);
        sv_send_error(r, 400, "invalid_input", field, "%s", e.msg);
        return;
    }
    bool refused = st == VKS_E_AUTH_FAILED || st == VKS_E_PERMISSION_DENIED;
    if (st != VKS_OK) {
        vks_vault_free(v);
        if (refused)
            sv_login_result(r->addr, user, false, r->now);
        sv_audit(r, "login", st, user[0] ? user : NULL, refused ? "refused by Vault" : "Vault unavailable");
        if (refused)
            sv_send_error(r, 401, "login_failed", NULL, "login failed: Vault refused the credentials");
        else
            sv_send_status(r, st, &e);
        return;
    }
    sv_login_result(r->addr, user, true, r->now);
    char cookie[65];
    struct sv_session *s = sv_session_new(v, &tok, name, acc, cookie);
    if (!s) {
        sv_send_error(r, 503, "nomem", NULL, "no session available");
        return;
    }
    s->created = s->last = r->now;
    r->s = s;
    sv_audit(r, "login", VKS_OK, name, user[0] ? "userpass" : "token");
    char hdr[200];
    snprintf(hdr, sizeof hdr, "vks_session=%s; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=%d", cookie,
             sv_cfg->session_max);
    vks_wipe(cookie, sizeof cookie);
    evhttp_add_header(evhttp_request_get_output_headers(r->req), "Set-Cookie", hdr);
    vks_wipe(hdr, sizeof hdr);
    sv_send_json(r, 200, session_json(s), true);
}

static void logout(struct sv_req *r)
{
    if (!sv_csrf_ok(r))
        return;
    sv_audit(r, "logout", VKS_OK, r->s->operator_name, "token revoked");
    sv_session_end(r->s, true);
    r->s = NULL;
    evhttp_add_header(evhttp_request_get_output_headers(r->req), "Set-Cookie",
                      "vks_session=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0");
    json_object *o = json_object_new_object();
    json_object_object_add(o, "logged_out", json_object_new_boolean(1));
    sv_send_json(r, 200, o, true);
}

static void openapi(struct sv_req *r)
{
    FILE *f = sv_cfg->openapi ? fopen(sv_cfg->openapi, "re") : NULL;
    if (!f) {
        sv_send_error(r, 404, "not_found", NULL, "no OpenAPI document configured (openapi)");
        return;
    }
    struct evbuffer *b = evbuffer_new();
    char buf[8192];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        evbuffer_add(b, buf, n);
    fclose(f);
    sv_security_headers(r->req, false);
    evhttp_add_header(evhttp_request_get_output_headers(r->req), "Content-Type", "application/json");
    evhttp_send_reply(r->req, 200, "OK", b);
    evbuffer_free(b);
}

void sv_api(struct sv_req *r)
{
    const char *p = r->path + 8; /* after "/api/v1/" */
    bool get = !strcmp(r->method, "GET"), post = !strcmp(r->method, "POST");
    if (!strcmp(p, "health") && get)
        {
            health(r);
            return;
        }
    if (!strcmp(p, "openapi.json") && get)
        {
            openapi(r);
            return;
        }
    if (!strcmp(p, "login") && post)
        {
            login(r);
            return;
        }
    if (!r->s) {
        evhttp_add_header(evhttp_request_get_output_headers(r->req), "WWW-Authenticate", "Cookie realm=\"vks\"");
        sv_send_error(r, 401, "unauthenticated", NULL, "log in first (POST /api/v1/login)");
        return;
    }
    if (!strcmp(p, "logout") && post)
        {
            logout(r);
            return;
        }
    if (!strcmp(p, "session") && get)
        {
            sv_send_json(r, 200, session_json(r->s), true);
            return;
        }
    if (!strcmp(p, "credentials") || !strncmp(p, "credentials/", 12))
        {
            sv_api_credentials(r, p[11] == '/' ? p + 12 : "");
            return;
        }
    if (!strcmp(p, "due") && get)
        {
            sv_api_due(r);
            return;
        }
    if (!strcmp(p, "audit") && get)
        {
            sv_api_audit(r, false);
            return;
        }
    if (!strncmp(p, "jobs/", 5) && get) {
        sv_api_job(r, p + 5);
        return;
    }
    if (!strcmp(p, "audit/verify") && get)
        {
            sv_api_audit(r, true);
            return;
        }
    sv_send_error(r, 404, "not_found", NULL, "no such endpoint: %s %.200s", r->method, r->path);
}
