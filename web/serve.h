/*
 * vks-serve (`vks serve`): the admin HTTPS API and the web UI (docs/serve.md; design:
 * docs/internals/serve.md). One libevent loop thread, evhttp with OpenSSL bufferevents (as the
 * agent's vault_api); every act calls the same core operation as `vks cred` (src/vks_cred*.h) with
 * a vks_cred_ctx built around the operator's own Vault client, so Vault's ACL decides.
 *
 * Threading: everything here runs on the loop thread (the core calls block it for the length of
 * one Vault round trip; an admin console has few users). No locks.
 * Secrets: operator tokens live in vks_secret slots inside the session table and in the session's
 * vks_vault client; passwords only in vks_secret slots and in the one response that carries them
 * (Cache-Control: no-store); request bodies that carry a secret are copied to a scratch buffer and
 * wiped in libevent's buffer.
 */
#ifndef VKS_SERVE_H
#define VKS_SERVE_H

#include <event2/http.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vks_cred.h"
#include "vks_secmem.h"
#include "vks_vault.h"

/* ---- configuration (conf.c) ---- */
struct sv_conf {
    char *host;
    int port;
    char *tls_cert, *tls_key;
    char *static_dir, *openapi;
    char *mount, *prefix, *userpass_mount;
    int session_idle, session_max;       /* seconds */
    int login_max_failures, login_lockout; /* failures per address or username; seconds locked */
    size_t max_body;
    int reveal_seconds;                  /* how long the UI shows a revealed password (30)  */
    char *rotate_set_hook, *rotate_cafile, *rotate_ehlo; /* vks cred rotate's --set-hook etc.  */
    char *totp_file;                     /* step-up secrets (stepup.c); NULL: none           */
    bool totp_required;                  /* every reveal needs a TOTP step-up                */
    struct vks_vault_config vault;       /* no token: each operator brings their own       */
};
/* 0, or -1 with err naming file, line and key. */
int sv_conf_load(const char *path, struct sv_conf *c, char *err, size_t n);
void sv_conf_free(struct sv_conf *c);

/* ---- sessions and login throttling (session.c) ---- */
#define SV_SESSIONS_MAX 256
struct sv_session {
    bool used;
    unsigned char id_hash[32];           /* SHA-256 of the cookie value                    */
    char csrf[65];
    int64_t created, last;
    struct vks_vault *vault;             /* the operator's client (holds the token)        */
    vks_secret token;                    /* the operator's token: a rotation job's own client */
    char operator_name[128], accessor[64];
    int64_t stepped_up_until;            /* a TOTP code was accepted: reveals, resets till then */
};
/* Takes ownership of vault and *token (emptied). *cookie receives the 64-hex session id (only ever in Set-Cookie). */
struct sv_session *sv_session_new(struct vks_vault *vault, vks_secret *token, const char *operator_name,
                                  const char *accessor, char cookie[65]);
/* The live session of a Cookie header, or NULL (absent, unknown, idle or too old: then ended). */
struct sv_session *sv_session_find(const char *cookie_header, int64_t now);
/* Ends the session (frees the client, wipes). revoke: revoke-self in Vault first. */
void sv_session_end(struct sv_session *s, bool revoke);
void sv_sessions_expire(int64_t now);
void sv_sessions_close(void);
/* Login throttling by address and by username: seconds to wait (0 = allowed). */
int sv_login_wait(const char *addr, const char *user, int64_t now);
void sv_login_result(const char *addr, const char *user, bool ok, int64_t now);

/* ---- one request (http.c) ---- */
struct sv_req {
    struct evhttp_request *req;
    const char *method;                  /* "GET", "POST", "DELETE"                        */
    char path[1024];                     /* decoded path, no query                         */
    struct evkeyvalq *query;             /* parsed query (may be empty)                    */
    char addr[64], ua[200];
    struct sv_session *s;                /* the session, when the cookie names a live one  */
    int64_t now;
};
extern struct sv_conf *sv_cfg;
extern const struct vks_keyring *sv_keyring; /* ENC: keys from the environment, as `vks cred` */
void sv_security_headers(struct evhttp_request *req, bool no_store);
void sv_send_json(struct sv_req *r, int code, json_object *o, bool no_store); /* takes o */
/* takes o (a JSON object without secrets) and answers it with "password": pw added, built in a
 * scratch buffer wiped when libevent releases it: a password never goes through json-c */
void sv_send_json_secret(struct sv_req *r, int code, json_object *o, const vks_secret *pw);
/* {"error": msg, "code": code, "field": field?} */
void sv_send_error(struct sv_req *r, int code, const char *codename, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
void sv_send_status(struct sv_req *r, vks_status st, const struct vks_err *e); /* core error -> HTTP */
int sv_status_http(vks_status st);                                            /* the status it uses */
void sv_send_html(struct sv_req *r, int code, struct evbuffer *body);            /* takes body */
void sv_redirect(struct sv_req *r, const char *to);
void sv_html(struct evbuffer *b, const char *s); /* HTML-escaped text */
/* The body as JSON (an object); NULL after answering 400/415 (naming what is wrong). */
json_object *sv_body_json(struct sv_req *r);
/* A state change must carry the session's CSRF token (X-CSRF-Token) and, when sent, a same-origin
 * Origin; false after answering 403. */
bool sv_csrf_ok(struct sv_req *r);
const char *sv_query(struct sv_req *r, const char *k);
/* json helpers: a string member (NULL when absent); false after answering 400 for a wrong type */
bool sv_json_str(struct sv_req *r, json_object *o, const char *k, bool required, const char **out);
bool sv_json_bool(struct sv_req *r, json_object *o, const char *k, bool *out);
bool sv_json_strs(struct sv_req *r, json_object *o, const char *k, const char ***out, size_t *n);

/* a vks_cred context for the session's operator (source "serve", address, user agent) */
vks_status sv_ctx(struct sv_req *r, const char *prefix, struct vks_cred_ctx *ctx, struct vks_err *e);
/* an audit event of the server itself (serve.login, serve.logout): operator may be NULL */
void sv_audit(struct sv_req *r, const char *action, vks_status st, const char *operator_name, const char *detail);
/* serve.view / serve.list: a read of a credential's metadata (path) or of a prefix's list */
void sv_audit_read(struct sv_req *r, const char *action, vks_status st, const char *path, const char *username);

/* ---- the API (api.c, api_cred.c, audit.c) ---- */
void sv_api(struct sv_req *r);
void sv_api_credentials(struct sv_req *r, const char *rest);
void sv_api_due(struct sv_req *r);
void sv_api_audit(struct sv_req *r, bool verify_only);
json_object *sv_record_json(const struct vks_cred_record *rec, bool full);
/* ?tenant=T -> "<prefix>T/" (else the prefix); false after answering 400 */
bool sv_tenant_prefix(struct sv_req *r, char *out, size_t cap);
/* "domains"/"all_domains", "ips"/"all_ips" of a body into rs; false after answering 400 */
bool sv_body_lists(struct sv_req *r, json_object *b, struct vks_cred_restrictions *rs);
void sv_api_reveal(struct sv_req *r, const char *prefix, const char *name);
void sv_api_restrict(struct sv_req *r, const char *prefix, const char *name);
void sv_api_delete(struct sv_req *r, const char *prefix, const char *name);
void sv_api_reset(struct sv_req *r, const char *prefix, const char *name); /* issue 13, one NAME */
/* events of the audit file matching the filters (NULL = any), the newest `limit`, and the chain
 * verdict: "verified", "broken at line N", "unverifiable" or "unavailable". */
json_object *sv_audit_query(const char *path, const char *operator_name, const char *action, const char *since,
                            const char *until, int limit, char *verdict, size_t vcap);

/* ---- rotation jobs (rotate.c): vks_cred_rotate on a thread of its own, steps polled ---- */
void sv_api_rotate(struct sv_req *r, const char *prefix, const char *name);
void sv_api_job(struct sv_req *r, const char *id);
/* starts a rotation job of name for the session's operator: true with its id; false with why */
bool sv_rotate_job(struct sv_req *r, const char *prefix, const char *name, bool resume, char id[33], const char **why);

/* ---- TOTP step-up (stepup.c) ---- */
int sv_totp_load(const char *path, char *err, size_t n);
void sv_totp_close(void);
bool sv_stepup_needed(const struct sv_session *s, int64_t now);
/* checks code (may be NULL) for the session's operator; false after answering 401/403 */
bool sv_stepup(struct sv_req *r, const char *code);

/* ---- the UI (ui.c) and static files ---- */
void sv_ui(struct sv_req *r);
/* page scaffolding shared by ui.c and ui_cred.c: header (with the CSRF meta), footer and send,
 * an error paragraph (returns the HTTP status for the error) */
struct evbuffer *sv_page(struct sv_req *r, const char *title);
void sv_page_end(struct sv_req *r, int code, struct evbuffer *b);
int sv_page_error(struct sv_req *r, struct evbuffer *b, vks_status st, const struct vks_err *e);
void sv_cred_page(struct sv_req *r);
void sv_audit_page(struct sv_req *r);
void sv_static(struct sv_req *r, const char *file);

#endif
