/*
 * vks-serve: `vks serve --config FILE` (cli/vks.c execs this program). Loads the configuration,
 * the ENC: keyring (VKS_ENCRYPTION_KEY*, as `vks cred`) and the TLS certificate, then serves the
 * API (/api/v1/) and the UI over HTTPS on one libevent loop: evhttp with an OpenSSL bufferevent
 * per connection, as agent/vaultapi.c. SIGINT/SIGTERM end every session (tokens not revoked: they
 * belong to the operators) and exit 0.
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <sys/queue.h>
#include <event2/keyvalq_struct.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "serve.h"
#include "vks_envelope.h"

struct sv_conf *sv_cfg;
const struct vks_keyring *sv_keyring;
static SSL_CTX *g_ssl;

static const char usage[] =
    "usage: vks serve --config FILE\n"
    "\n"
    "Serves the admin API (/api/v1/, OpenAPI at /api/v1/openapi.json) and the web UI over HTTPS.\n"
    "Operators log in with their own Vault token or userpass; every act is made with their token.\n"
    "The configuration (TOML) names listen, tls_cert, tls_key, static_dir and more: docs/serve.md.\n"
    "Encryption keys from VKS_ENCRYPTION_KEY*, the audit sink from [audit] or VKS_AUDIT_*.\n"
    "exit status: 0 stopped by SIGINT/SIGTERM; 1 configuration, certificate or listen failure.\n";

static void on_request(struct evhttp_request *req, void *arg)
{
    (void)arg;
    struct sv_req r;
    memset(&r, 0, sizeof r);
    r.req = req;
    r.now = (int64_t)time(NULL);
    enum evhttp_cmd_type c = evhttp_request_get_command(req);
    r.method = c == EVHTTP_REQ_GET ? "GET" : c == EVHTTP_REQ_POST ? "POST" : c == EVHTTP_REQ_DELETE ? "DELETE" : "HEAD";
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
    const char *raw = u ? evhttp_uri_get_path(u) : NULL;
    size_t dlen = 0;
    char *dec = raw ? evhttp_uridecode(raw, 0, &dlen) : NULL;
    /* refused: too long, a "%00" (the decoded length then differs), a ".." segment */
    if (!dec || dlen >= sizeof r.path || strlen(dec) != dlen || strstr(dec, "/../") || (dlen >= 3 && !strcmp(dec + dlen - 3, "/.."))) {
        free(dec);
        sv_security_headers(req, true);
        evhttp_send_error(req, 400, "Bad Request");
        return;
    }
    snprintf(r.path, sizeof r.path, "%s", dec);
    free(dec);
    struct evkeyvalq q;
    memset(&q, 0, sizeof q);
    q.tqh_last = &q.tqh_first;
    const char *qs = u ? evhttp_uri_get_query(u) : NULL;
    if (qs && evhttp_parse_query_str(qs, &q) == 0)
        r.query = &q;
    char *host = NULL;
    ev_uint16_t port = 0;
    evhttp_connection_get_peer(evhttp_request_get_connection(req), &host, &port);
    snprintf(r.addr, sizeof r.addr, "%s", host ? host : "?");
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    const char *ua = evhttp_find_header(in, "User-Agent");
    snprintf(r.ua, sizeof r.ua, "%s", ua ? ua : "");
    r.s = sv_session_find(evhttp_find_header(in, "Cookie"), r.now);
    if (!strncmp(r.path, "/api/v1/", 8))
        sv_api(&r);
    else if (!strncmp(r.path, "/static/", 8) && !strcmp(r.method, "GET"))
        sv_static(&r, r.path + 8);
    else if (!strcmp(r.path, "/favicon.ico"))
        sv_static(&r, "icon.svg");
    else
        sv_ui(&r);
    evhttp_clear_headers(&q);
}

static struct bufferevent *tls_bev(struct event_base *base, void *arg)
{
    (void)arg;
    SSL *ssl = SSL_new(g_ssl);
    return ssl ? bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE)
               : NULL;
}

static int tls_setup(void)
{
    g_ssl = SSL_CTX_new(TLS_server_method());
    if (g_ssl == NULL || SSL_CTX_set_min_proto_version(g_ssl, TLS1_2_VERSION) != 1 ||
        SSL_CTX_use_certificate_chain_file(g_ssl, sv_cfg->tls_cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(g_ssl, sv_cfg->tls_key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(g_ssl) != 1) {
        char buf[256];
        ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
        fprintf(stderr, "vks serve: tls_cert/tls_key %s: %s\n", sv_cfg->tls_cert, buf);
        return -1;
    }
    SSL_CTX_set_options(g_ssl, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    return 0;
}

static void on_signal(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    event_base_loopexit(arg, NULL);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    sv_sessions_expire((int64_t)time(NULL));
}

static int serve(void)
{
    struct event_base *base = event_base_new();
    struct evhttp *h = base ? evhttp_new(base) : NULL;
    if (!h || tls_setup() != 0)
        return 1;
    evhttp_set_timeout(h, 30);
    evhttp_set_max_headers_size(h, 16384);
    evhttp_set_max_body_size(h, (ev_ssize_t)sv_cfg->max_body);
    evhttp_set_allowed_methods(h, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_DELETE | EVHTTP_REQ_HEAD);
    evhttp_set_gencb(h, on_request, NULL);
    evhttp_set_bevcb(h, tls_bev, NULL);
    struct evhttp_bound_socket *bs = evhttp_bind_socket_with_handle(h, sv_cfg->host, (ev_uint16_t)sv_cfg->port);
    if (bs == NULL) {
        fprintf(stderr, "vks serve: cannot listen on %s:%d\n", sv_cfg->host, sv_cfg->port);
        return 1;
    }
    /* headers and body leave in separate writes: without TCP_NODELAY each answer waits for the
       client's delayed ACK (~40 ms), as the agent found (agent/vaultapi.c); Linux copies the option
       to every accepted socket */
    int one = 1;
    if (setsockopt(evhttp_bound_socket_get_fd(bs), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)
        fprintf(stderr, "vks serve: TCP_NODELAY: %s\n", strerror(errno));
    struct event *si = evsignal_new(base, SIGINT, on_signal, base), *st = evsignal_new(base, SIGTERM, on_signal, base);
    struct event *tick = event_new(base, -1, EV_PERSIST, on_tick, NULL);
    struct timeval tv = { 10, 0 };
    event_add(si, NULL);
    event_add(st, NULL);
    event_add(tick, &tv);
    fprintf(stderr, "vks serve: listening on https://%s:%d/\n", sv_cfg->host, sv_cfg->port);
    event_base_dispatch(base);
    fprintf(stderr, "vks serve: stopping\n");
    sv_sessions_close();
    event_free(si);
    event_free(st);
    event_free(tick);
    evhttp_free(h);
    event_base_free(base);
    SSL_CTX_free(g_ssl);
    return 0;
}

int main(int argc, char **argv)
{
    const char *conf = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(usage, stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--config") && i + 1 < argc)
            conf = argv[++i];
        else if (!strncmp(argv[i], "--config=", 9))
            conf = argv[i] + 9;
        else {
            fprintf(stderr, "vks serve: unexpected argument '%s'\n\n%s", argv[i], usage);
            return 1;
        }
    }
    if (!conf) {
        fputs(usage, stderr);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    static struct sv_conf c;
    char err[512];
    if (sv_conf_load(conf, &c, err, sizeof err) != 0) {
        fprintf(stderr, "vks serve: %s\n", err);
        sv_conf_free(&c);
        return 1;
    }
    sv_cfg = &c;
    if (c.totp_file && sv_totp_load(c.totp_file, err, sizeof err) != 0) {
        fprintf(stderr, "vks serve: %s\n", err);
        sv_totp_close();
        sv_conf_free(&c);
        return 1;
    }
    struct vks_keyring *kr = NULL;
    struct vks_err e;
    vks_err_clear(&e);
    if (getenv("VKS_ENCRYPTION_KEY") || getenv("VKS_ENCRYPTION_KEY_FILE")) {
        if (vks_keyring_load_env(&kr, &e) != VKS_OK) {
            fprintf(stderr, "vks serve: %s\n", e.msg);
            sv_conf_free(&c);
            return 1;
        }
    } else
        fprintf(stderr, "vks serve: no VKS_ENCRYPTION_KEY: create and reveal of ENC: credentials will fail\n");
    sv_keyring = kr;
    int rc = serve();
    sv_totp_close();
    vks_keyring_free(kr);
    sv_conf_free(&c);
    return rc;
}
