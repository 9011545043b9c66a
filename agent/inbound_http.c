/*
 * vks-agent inbound over HTTP (docs/inbound.md "KumoMTA"): on the [vault_api] listener, with
 * inbound.http_verify = true and a [[vault_api.client]] token,
 *
 *   POST /v1/vks/inbound/verify  {"username", "password", "source"?, "sender"?}
 *        the login (and, with sender, the sender's domain) -> {"ok", "result", "reason", ...}
 *   POST /v1/vks/inbound/sender  {"username", "sender", "source"?}
 *        the sender's domain for an authenticated user
 *
 * for policies that cannot speak the unix-socket protocols (KumoMTA's kumo.http). The answer is
 * 200 for every decision (read "ok"), 503 when the credential store could not be asked, 400/403/
 * 404/405 for bad requests. The body is scanned where it lies (vks_json, no copies) in an arena
 * slot; the password is decoded into another slot and wiped by the worker. libevent's own input
 * buffer is not wiped (docs/inbound.md says so: prefer the unix sockets where possible).
 * Loop thread, except the verification itself (inbound.c's workers).
 */
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vks_evbuf.h"
#include "inbound_int.h"
#include "vks_json.h"

#define BODY_MAX 4095

struct http_pending {
    struct evhttp_request *req;        /* NULL once the client went away                         */
    struct evhttp_connection *evcon;
};

void ag_inbound_http_job_done(struct in_job *j);

static void reply(struct evhttp_request *req, int code, json_object *o)
{
    struct evbuffer *b = evbuffer_new();
    const char *txt = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
    if (b == NULL) {
        evhttp_send_error(req, 500, NULL);
    } else {
        evbuffer_add(b, txt, strlen(txt));
        evbuffer_add(b, "\n", 1);
        struct evkeyvalq *h = evhttp_request_get_output_headers(req);
        evhttp_add_header(h, "Content-Type", "application/json");
        evhttp_add_header(h, "Cache-Control", "no-store");
        evhttp_send_reply(req, code, code == 200 ? "OK" : "Error", b);
        evbuffer_free(b);
    }
    json_object_put(o);
}

static void error(struct evhttp_request *req, int code, const char *msg)
{
    json_object *o = json_object_new_object(), *a = json_object_new_array();
    json_object_array_add(a, json_object_new_string(msg));
    json_object_object_add(o, "errors", a);
    reply(req, code, o);
}

/* Decodes string span s into out (cap includes the NUL); false when absent, not a string or too long. */
static bool text(const char *body, const struct vks_json_span *s, char *out, size_t cap)
{
    size_t n = 0;
    if (s->type != VKS_JSON_STRING || vks_json_string_decoded_len(body, s) >= cap ||
        vks_json_string_decode(body, s, (unsigned char *)out, cap - 1, &n, NULL) != VKS_OK)
        return false;
    out[n] = '\0';
    return strlen(out) == n;
}

/* Fills the job from the body; NULL on success, else the message for a 400. */
static const char *parse(const char *body, size_t len, bool sender_only, struct in_job *j)
{
    struct vks_json_query q[4] = { { { "username" }, 1, { 0 } }, { { "password" }, 1, { 0 } },
                                   { { "source" }, 1, { 0 } }, { { "sender" }, 1, { 0 } } };
    if (vks_json_scan(body, len, q, 4, "request body", NULL) != VKS_OK)
        return "the body is not a JSON object";
    if (!text(body, &q[0].found, j->user, sizeof j->user) || j->user[0] == '\0')
        return "username: a string of 1-255 bytes is required";
    if (q[2].found.type != VKS_JSON_NONE && !text(body, &q[2].found, j->rip, sizeof j->rip))
        return "source: must be a string (an IPv4 or IPv6 address)";
    if (q[3].found.type != VKS_JSON_NONE && !text(body, &q[3].found, j->sender, sizeof j->sender))
        return "sender: must be a string of at most 511 bytes";
    j->check_sender = q[3].found.type != VKS_JSON_NONE;
    if (sender_only) {
        if (!j->check_sender)
            return "sender: required";
        return NULL;
    }
    size_t n = q[1].found.type == VKS_JSON_STRING ? vks_json_string_decoded_len(body, &q[1].found) : 0;
    if (q[1].found.type != VKS_JSON_STRING || n > 1024)
        return "password: a string of at most 1024 bytes is required";
    if (vks_secret_alloc(n + 1, &j->pw, NULL) != VKS_OK ||
        vks_json_string_decode(body, &q[1].found, j->pw.data, j->pw.cap, &j->pw.len, NULL) != VKS_OK)
        return "password: cannot be decoded (or out of locked memory)";
    return NULL;
}

static void on_close(struct evhttp_connection *evcon, void *arg)
{
    (void)evcon;
    struct http_pending *p = arg;
    p->req = NULL;
}

bool ag_inbound_http_try(struct evhttp_request *req, const struct ag_conf *conf);

bool ag_inbound_http_try(struct evhttp_request *req, const struct ag_conf *conf)
{
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    bool verify = path && strcmp(path, "/v1/vks/inbound/verify") == 0;
    bool sender = path && strcmp(path, "/v1/vks/inbound/sender") == 0;
    if (!verify && !sender)
        return false;
    if (in_conf == NULL || !in_conf->http_verify) {
        error(req, 404, "inbound verification is not enabled (inbound.http_verify)");
        return true;
    }
    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
        error(req, 405, "POST only");
        return true;
    }
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    const char *tok = evhttp_find_header(in, "X-Vault-Token"), *authz = evhttp_find_header(in, "Authorization");
    if ((tok == NULL || tok[0] == '\0') && authz != NULL && strncmp(authz, "Bearer ", 7) == 0)
        tok = authz + 7;
    const struct ag_api_client *c = ag_api_find_client(&conf->api, tok);
    if (c == NULL) {
        ag_log("warning", "inbound http: unknown or missing token: permission denied");
        error(req, 403, "permission denied");
        return true;
    }
    struct evbuffer *b = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(b);
    vks_secret body = VKS_SECRET_EMPTY;
    struct in_job *j = calloc(1, sizeof *j);
    struct http_pending *p = calloc(1, sizeof *p);
    const char *bad = j == NULL || p == NULL ? "out of memory"
                      : len == 0 || len > BODY_MAX ? "the body must be a JSON object of 1-4095 bytes"
                      : vks_secret_alloc(len, &body, NULL) != VKS_OK ? "out of locked memory"
                                                                      : NULL;
    body.len = vks_evbuffer_take_wiped(b, bad == NULL ? body.data : NULL, bad == NULL ? len : 0);
    if (bad == NULL)
        bad = parse((const char *)body.data, body.len, sender, j);
    vks_secret_free(&body);
    if (bad != NULL) {
        if (j)
            vks_secret_free(&j->pw);
        free(j);
        free(p);
        error(req, 400, bad);
        return true;
    }
    p->req = req;
    p->evcon = evhttp_request_get_connection(req);
    evhttp_connection_set_closecb(p->evcon, on_close, p);
    j->http = p;
    j->kind = IN_HTTP;
    j->id = sender ? 1 : 0; /* 1: the sender check only (no password) */
    in_submit(j);
    return true;
}

void ag_inbound_http_job_done(struct in_job *j)
{
    struct http_pending *p = j->http;
    const struct vks_inbound_answer *a = j->id == 1 ? &j->sans : &j->ans;
    bool ok = a->outcome == VKS_IN_OK;
    if (j->id != 1 && ok && j->check_sender) {
        a = &j->sans;
        ok = a->outcome == VKS_IN_OK;
    }
    if (p != NULL && p->req != NULL) {
        evhttp_connection_set_closecb(p->evcon, NULL, NULL);
        json_object *o = json_object_new_object();
        json_object_object_add(o, "ok", json_object_new_boolean(ok));
        json_object_object_add(o, "result", json_object_new_string(vks_inbound_outcome_name(a->outcome)));
        json_object_object_add(o, "reason", json_object_new_string(a->reason));
        if (ok && j->ans.username[0])
            json_object_object_add(o, "username", json_object_new_string(j->ans.username));
        json_object_object_add(o, "cached", json_object_new_boolean(a->cached));
        reply(p->req, a->outcome == VKS_IN_TEMP ? 503 : 200, o);
    }
    vks_secret_free(&j->pw);
    free(p);
    free(j);
}
