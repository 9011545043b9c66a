/*
 * vks-serve: what every request shares: security headers, JSON and HTML answers, the JSON body
 * reader (400 naming the field or the offset), the CSRF check, and the core context of the
 * session's operator. Loop thread only.
 */
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vks_evbuf.h"
#include "serve.h"
#include "vks_audit.h"
#include "vks_json.h"

/* No inline script or style, nothing from elsewhere, never framed. */
#define SV_CSP "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " \
               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

void sv_security_headers(struct evhttp_request *req, bool no_store)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Security-Policy", SV_CSP);
    evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
    evhttp_add_header(h, "X-Frame-Options", "DENY");
    evhttp_add_header(h, "Referrer-Policy", "no-referrer");
    evhttp_add_header(h, "Strict-Transport-Security", "max-age=31536000");
    evhttp_add_header(h, "Cross-Origin-Opener-Policy", "same-origin");
    evhttp_add_header(h, "Cross-Origin-Resource-Policy", "same-origin");
    evhttp_add_header(h, "Cache-Control", no_store ? "no-store" : "private, max-age=300");
}

static const char *reason(int code)
{
    switch (code) {
    case 200: return "OK";
    case 201: return "Created";
    case 303: return "See Other";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 429: return "Too Many Requests";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    default: return "Error";
    }
}

/* The JSON text of a reply may carry a password: it is wiped when libevent releases it. */
static void wipe_free(const void *data, size_t len, void *arg)
{
    (void)arg;
    vks_wipe((void *)data, len);
    free((void *)data);
}

void sv_send_json(struct sv_req *r, int code, json_object *o, bool no_store)
{
    size_t n = 0;
    const char *txt = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &n);
    char *copy = malloc(n + 1);
    struct evbuffer *b = evbuffer_new();
    if (copy && b) {
        memcpy(copy, txt, n);
        copy[n] = '\n';
        evbuffer_add_reference(b, copy, n + 1, wipe_free, NULL);
        copy = NULL;
    }
    vks_wipe((void *)txt, n);
    json_object_put(o);
    free(copy);
    sv_security_headers(r->req, true);
    (void)no_store; /* every API answer is no-store: most carry a credential's data */
    evhttp_add_header(evhttp_request_get_output_headers(r->req), "Content-Type", "application/json");
    evhttp_send_reply(r->req, code, reason(code), b);
    if (b)
        evbuffer_free(b);
}

static void scratch_release(const void *data, size_t len, void *arg)
{
    (void)data;
    (void)len;
    vks_scratch_close(arg);
    free(arg);
}

/* o (no secret in it) with "password" added: the text is built in a scratch buffer (locked, never
 * realloc'ed, wiped when libevent releases it), never in json-c, whose buffers grow by realloc. */
void sv_send_json_secret(struct sv_req *r, int code, json_object *o, const vks_secret *pw)
{
    size_t n = 0;
    const char *txt = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &n);
    vks_scratch *sc = calloc(1, sizeof *sc);
    struct vks_err e;
    size_t cap = n + 6 * pw->len + 32, k = 0;
    if (!sc || n < 2 || vks_scratch_open(cap, sc, &e) != VKS_OK) {
        free(sc);
        json_object_put(o);
        sv_send_error(r, 503, "nomem", NULL, "no secure memory for the answer");
        return;
    }
    char *b = (char *)sc->data;
    memcpy(b, txt, n - 1); /* without the closing brace */
    k = n - 1;
    memcpy(b + k, ",\"password\":", 12);
    k += 12;
    size_t w = vks_json_write_string(pw->data, pw->len, b + k, cap - k - 3);
    k += w;
    b[k++] = '}';
    b[k++] = '\n';
    sc->len = k;
    json_object_put(o);
    struct evbuffer *buf = evbuffer_new();
    sv_security_headers(r->req, true);
    evhttp_add_header(evhttp_request_get_output_headers(r->req), "Content-Type", "application/json");
    if (!buf || w == 0 || evbuffer_add_reference(buf, sc->data, sc->len, scratch_release, sc) != 0) {
        vks_scratch_close(sc);
        free(sc);
        if (buf)
            evbuffer_free(buf);
        sv_send_error(r, 500, "internal", NULL, "cannot build the answer");
        return;
    }
    evhttp_send_reply(r->req, code, reason(code), buf);
    evbuffer_free(buf);
}

void sv_send_error(struct sv_req *r, int code, const char *codename, const char *field, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "error", json_object_new_string(msg));
    json_object_object_add(o, "code", json_object_new_string(codename));
    if (field)
        json_object_object_add(o, "field", json_object_new_string(field));
    sv_send_json(r, code, o, true);
}

void sv_send_status(struct sv_req *r, vks_status st, const struct vks_err *e)
{
    sv_send_error(r, sv_status_http(st), vks_status_code(st), NULL, "%s", e && e->msg[0] ? e->msg : vks_status_code(st));
}

int sv_status_http(vks_status st)
{
    int code;
    switch (st) {
    case VKS_E_INVALID_INPUT: code = 400; break;
    case VKS_E_PERMISSION_DENIED: code = 403; break;
    case VKS_E_NOT_FOUND: code = 404; break;
    case VKS_E_EXISTS:
    case VKS_E_CONFLICT: code = 409; break;
    case VKS_E_REJECTED: code = 400; break;
    case VKS_E_AUTH_FAILED: code = 401; break;
    case VKS_E_SEALED:
    case VKS_E_AUDIT_UNAVAILABLE: code = 503; break;
    case VKS_OK: code = 200; break;
    default: code = 502; break;
    }
    return code;
}

void sv_send_html(struct sv_req *r, int code, struct evbuffer *body)
{
    sv_security_headers(r->req, true);
    evhttp_add_header(evhttp_request_get_output_headers(r->req), "Content-Type", "text/html; charset=utf-8");
    evhttp_send_reply(r->req, code, reason(code), body);
    evbuffer_free(body);
}

void sv_redirect(struct sv_req *r, const char *to)
{
    sv_security_headers(r->req, true);
    evhttp_add_header(evhttp_request_get_output_headers(r->req), "Location", to);
    evhttp_send_reply(r->req, 303, "See Other", NULL);
}

void sv_html(struct evbuffer *b, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        switch (*p) {
        case '&': evbuffer_add(b, "&amp;", 5); break;
        case '<': evbuffer_add(b, "&lt;", 4); break;
        case '>': evbuffer_add(b, "&gt;", 4); break;
        case '"': evbuffer_add(b, "&quot;", 6); break;
        case '\'': evbuffer_add(b, "&#39;", 5); break;
        default:
            if (*p < 0x20 && *p != '\n' && *p != '\t')
                evbuffer_add(b, "?", 1);
            else
                evbuffer_add(b, p, 1);
        }
    }
}

json_object *sv_body_json(struct sv_req *r)
{
    struct evkeyvalq *h = evhttp_request_get_input_headers(r->req);
    const char *ct = evhttp_find_header(h, "Content-Type");
    if (!ct || strncmp(ct, "application/json", 16) != 0) {
        sv_send_error(r, 415, "unsupported_media_type", NULL, "the body must be JSON (Content-Type: application/json)");
        return NULL;
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(r->req);
    size_t n = evbuffer_get_length(in);
    vks_scratch body = { 0 }; /* a body may carry a secret (login): locked, and wiped where it was */
    struct vks_err e;
    bool room = vks_scratch_open(n + 1, &body, &e) == VKS_OK;
    n = vks_evbuffer_take_wiped(in, room ? body.data : NULL, room ? n : 0);
    json_tokener *tok = room ? json_tokener_new() : NULL;
    json_object *o = tok ? json_tokener_parse_ex(tok, (const char *)body.data, (int)n) : NULL;
    enum json_tokener_error je = tok ? json_tokener_get_error(tok) : json_tokener_error_parse_eof;
    size_t off = tok ? json_tokener_get_parse_end(tok) : 0;
    if (tok)
        json_tokener_free(tok);
    body.len = n;
    vks_scratch_close(&body);
    if (!room) {
        sv_send_error(r, 503, "nomem", NULL, "no secure memory for the request");
        return NULL;
    }
    if (!o || je != json_tokener_success || off != n || !json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        sv_send_error(r, 400, "malformed_json", "body", "the body is not one JSON object (%s at byte %zu)",
                      n == 0 ? "empty" : je != json_tokener_success ? json_tokener_error_desc(je) : "not an object",
                      off);
        return NULL;
    }
    return o;
}

bool sv_csrf_ok(struct sv_req *r)
{
    struct evkeyvalq *h = evhttp_request_get_input_headers(r->req);
    const char *tok = evhttp_find_header(h, "X-CSRF-Token");
    const char *origin = evhttp_find_header(h, "Origin");
    const char *host = evhttp_find_header(h, "Host");
    char want[300];
    snprintf(want, sizeof want, "https://%s", host ? host : "");
    if (origin && strcmp(origin, want) != 0) {
        sv_send_error(r, 403, "cross_origin", NULL, "cross-origin request refused (Origin %.100s)", origin);
        return false;
    }
    if (!r->s || !tok || strlen(tok) != 64 || CRYPTO_memcmp(tok, r->s->csrf, 64) != 0) {
        sv_send_error(r, 403, "csrf", NULL, "missing or wrong CSRF token (X-CSRF-Token)");
        return false;
    }
    return true;
}

const char *sv_query(struct sv_req *r, const char *k)
{
    const char *v = r->query ? evhttp_find_header(r->query, k) : NULL;
    return v && *v ? v : NULL;
}

bool sv_json_str(struct sv_req *r, json_object *o, const char *k, bool required, const char **out)
{
    json_object *v = NULL;
    *out = NULL;
    if (!json_object_object_get_ex(o, k, &v) || json_object_is_type(v, json_type_null)) {
        if (required)
            sv_send_error(r, 400, "invalid_input", k, "%s is required", k);
        return !required;
    }
    if (!json_object_is_type(v, json_type_string)) {
        sv_send_error(r, 400, "invalid_input", k, "%s must be a string", k);
        return false;
    }
    *out = json_object_get_string(v);
    return true;
}

bool sv_json_bool(struct sv_req *r, json_object *o, const char *k, bool *out)
{
    json_object *v = NULL;
    *out = false;
    if (!json_object_object_get_ex(o, k, &v) || json_object_is_type(v, json_type_null))
        return true;
    if (!json_object_is_type(v, json_type_boolean)) {
        sv_send_error(r, 400, "invalid_input", k, "%s must be true or false", k);
        return false;
    }
    *out = json_object_get_boolean(v);
    return true;
}

/* an array of strings; *out is malloc'd (borrowed strings), NULL when absent */
bool sv_json_strs(struct sv_req *r, json_object *o, const char *k, const char ***out, size_t *n)
{
    json_object *v = NULL;
    *out = NULL;
    *n = 0;
    if (!json_object_object_get_ex(o, k, &v) || json_object_is_type(v, json_type_null))
        return true;
    size_t len = json_object_is_type(v, json_type_array) ? json_object_array_length(v) : 0;
    if (!json_object_is_type(v, json_type_array) || len > 256) {
        sv_send_error(r, 400, "invalid_input", k, "%s must be an array of at most 256 strings", k);
        return false;
    }
    *out = calloc(len + 1, sizeof **out);
    for (size_t i = 0; *out && i < len; i++) {
        json_object *e = json_object_array_get_idx(v, i);
        if (!json_object_is_type(e, json_type_string)) {
            free(*out);
            *out = NULL;
            sv_send_error(r, 400, "invalid_input", k, "%s[%zu] must be a string", k, i);
            return false;
        }
        (*out)[(*n)++] = json_object_get_string(e);
    }
    return true;
}

vks_status sv_ctx(struct sv_req *r, const char *prefix, struct vks_cred_ctx *ctx, struct vks_err *e)
{
    vks_status st = vks_cred_ctx_init(ctx, r->s->vault, sv_keyring, sv_cfg->mount, prefix ? prefix : sv_cfg->prefix,
                                      "serve", e);
    if (st != VKS_OK)
        return st;
    snprintf(ctx->operator_name, sizeof ctx->operator_name, "%s", r->s->operator_name);
    snprintf(ctx->operator_accessor, sizeof ctx->operator_accessor, "%s", r->s->accessor);
    ctx->identity_known = true;
    ctx->client_addr = r->addr;
    ctx->user_agent = r->ua;
    return VKS_OK;
}

void sv_audit(struct sv_req *r, const char *action, vks_status st, const char *operator_name, const char *detail)
{
    struct vks_audit_admin_event ev = {
        .action = action, .status = st, .operator_name = operator_name, .source = "serve",
        .detail = detail, .group = "serve", .client_addr = r->addr, .user_agent = r->ua,
        .operator_accessor = r->s ? r->s->accessor : NULL,
    };
    struct vks_err e;
    vks_err_clear(&e);
    if (vks_audit_emit_admin(&ev, NULL, &e) != VKS_OK)
        fprintf(stderr, "vks serve: audit: %s\n", e.msg);
}

void sv_audit_read(struct sv_req *r, const char *action, vks_status st, const char *path, const char *username)
{
    struct vks_audit_admin_event ev = {
        .action = action, .status = st, .operator_name = r->s->operator_name, .operator_accessor = r->s->accessor,
        .source = "serve", .mount = sv_cfg->mount ? sv_cfg->mount : VKS_CRED_DEFAULT_MOUNT, .path = path,
        .username = username && *username ? username : NULL, .group = "serve", .client_addr = r->addr,
        .user_agent = r->ua,
    };
    struct vks_err e;
    vks_err_clear(&e);
    if (vks_audit_emit_admin(&ev, NULL, &e) != VKS_OK)
        fprintf(stderr, "vks serve: audit: %s\n", e.msg);
}
