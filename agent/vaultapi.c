/*
 * vks-agent vault_api: a Vault-compatible read endpoint (evhttp) on a loopback TCP port and/or a
 * unix socket, for unmodified Vault clients (KumoMTA's vault keysource via vaultrs, hvac, the
 * vault CLI). Loop thread only.
 *
 *   GET /v1/<mount>/data/<path>[?version=N]   KV v2 read (Vault's response shape)
 *   GET /v1/<mount>/<path>                    KV v1 read
 *
 * Clients authenticate with agent-issued tokens (X-Vault-Token, or Authorization: Bearer); the
 * config holds only their SHA-256, each with a name, the mounts and the path prefixes it may read.
 * The agent's own Vault token is never involved in this exchange. Anything else gets 403 (or 405,
 * 404) in Vault's error shape {"errors":[...]}. The lookup runs on the worker pool; the body (it
 * holds the secret) is handed to libevent by reference and wiped when libevent releases it.
 * A client that disconnects while its lookup runs is noticed through the connection's close
 * callback; the reply is then dropped (and wiped).
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "agent.h"

bool ag_inbound_http_try(struct evhttp_request *req, const struct ag_conf *conf); /* inbound_http.c */

struct pending {
    struct evhttp_request *req;       /* NULL once the client went away                         */
    struct evhttp_connection *evcon;
};

static struct evhttp *g_tcp, *g_unix;
static SSL_CTX *g_ssl;
static char *g_unix_path;

static void send_json(struct evhttp_request *req, int code, const char *body)
{
    struct evbuffer *b = evbuffer_new();
    if (b == NULL) {
        evhttp_send_error(req, 500, NULL);
        return;
    }
    evbuffer_add(b, body, strlen(body));
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", "application/json");
    evhttp_add_header(h, "Cache-Control", "no-store");
    evhttp_send_reply(req, code, code == 403 ? "Forbidden" : code == 404 ? "Not Found" : code == 405 ? "Method Not Allowed" : "Bad Request", b);
    evbuffer_free(b);
}

static void wipe_cleanup(const void *data, size_t len, void *arg)
{
    (void)data;
    (void)len;
    vks_secret *s = arg;
    vks_secret_free(s);
    free(s);
}

static void on_conn_close(struct evhttp_connection *evcon, void *arg)
{
    (void)evcon;
    struct pending *p = arg;
    p->req = NULL;
}

/* Finished lookup (loop thread, from the pool's completion callback). */
void ag_api_job_done(struct ag_job *j)
{
    struct pending *p = j->conn;
    ag_metrics_lookup(AG_PROTO_VAULTAPI, j->result);
    if (j->result != AG_R_OK && j->result != AG_R_NOTFOUND)
        ag_log("warning", "vault_api client %s path %s/%s: %d: %s", j->client->name, j->mount, j->key,
               j->http_status, j->why);
    if (p->req != NULL) {
        evhttp_connection_set_closecb(p->evcon, NULL, NULL);
        struct evbuffer *b = evbuffer_new();
        vks_secret *body = malloc(sizeof *body);
        if (b == NULL || body == NULL || j->reply.len == 0) {
            free(body);
            if (b != NULL)
                evbuffer_free(b);
            evhttp_send_error(p->req, 500, NULL);
        } else {
            *body = j->reply; /* the slot now belongs to libevent's buffer, wiped on release */
            j->reply = VKS_SECRET_EMPTY;
            evbuffer_add_reference(b, body->data, body->len, wipe_cleanup, body);
            struct evkeyvalq *h = evhttp_request_get_output_headers(p->req);
            evhttp_add_header(h, "Content-Type", "application/json");
            evhttp_add_header(h, "Cache-Control", "no-store");
            int code = j->http_status ? j->http_status : 500;
            evhttp_send_reply(p->req, code, code == 200 ? "OK" : "Error", b);
            evbuffer_free(b);
        }
    }
    vks_secret_free(&j->reply);
    ag_job_clear(j);
    ag_conf_unref(j->conf);
    free(p);
    free(j);
}

const struct ag_api_client *ag_api_find_client(const struct ag_api_conf *api, const char *token)
{
    unsigned char h[32];
    unsigned int hl = 0;
    if (token == NULL || token[0] == '\0' || EVP_Digest(token, strlen(token), h, &hl, EVP_sha256(), NULL) != 1)
        return NULL;
    const struct ag_api_client *found = NULL;
    for (size_t i = 0; i < api->n_clients; i++) /* every entry compared, in constant time each */
        if (vks_ct_equal(h, api->clients[i].token_sha256, 32) && found == NULL)
            found = &api->clients[i];
    vks_wipe(h, sizeof h);
    return found;
}

/* Splits "/v1/<mount>/..." for one of the client's mounts; KV v2 when followed by "data/". */
static bool split_path(const struct ag_api_client *c, const char *p, struct ag_job *j)
{
    if (strncmp(p, "/v1/", 4) != 0)
        return false;
    p += 4;
    for (size_t i = 0; i < c->n_mounts; i++) {
        size_t ml = strlen(c->mounts[i]);
        if (strncmp(p, c->mounts[i], ml) != 0 || p[ml] != '/' || ml >= sizeof j->mount)
            continue;
        const char *rest = p + ml + 1;
        j->kv_version = 1;
        if (strncmp(rest, "data/", 5) == 0) {
            j->kv_version = 2;
            rest += 5;
        }
        size_t rl = strlen(rest);
        if (rl == 0 || rl > AG_KEY_MAX || strstr(rest, "..") != NULL || rest[0] == '/' || rest[rl - 1] == '/')
            return false;
        for (size_t k = 0; k < c->n_prefixes; k++) {
            if (strncmp(rest, c->prefixes[k], strlen(c->prefixes[k])) == 0) {
                memcpy(j->mount, c->mounts[i], ml + 1);
                memcpy(j->key, rest, rl + 1);
                return true;
            }
        }
    }
    return false;
}

static void on_request(struct evhttp_request *req, void *arg)
{
    bool is_unix = arg != NULL;
    struct ag_conf *conf = ag_net_conf();
    if (conf == NULL) {
        send_json(req, 503, "{\"errors\":[\"shutting down\"]}\n");
        return;
    }
    if (ag_inbound_http_try(req, conf)) /* POST /v1/vks/inbound/... (agent/inbound_http.c) */
        return;
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    if (cmd != EVHTTP_REQ_GET) {
        send_json(req, 405, "{\"errors\":[\"only GET (reads) is served by vks-agent\"]}\n");
        return;
    }
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    const char *tok = evhttp_find_header(in, "X-Vault-Token");
    const char *authz = evhttp_find_header(in, "Authorization");
    if ((tok == NULL || tok[0] == '\0') && authz != NULL && strncmp(authz, "Bearer ", 7) == 0)
        tok = authz + 7;
    const struct ag_api_client *c = ag_api_find_client(&conf->api, tok);
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    const char *query = uri ? evhttp_uri_get_query(uri) : NULL;
    struct ag_job *j = calloc(1, sizeof *j);
    struct pending *p = calloc(1, sizeof *p);
    if (j == NULL || p == NULL) {
        free(j);
        free(p);
        evhttp_send_error(req, 500, NULL);
        return;
    }
    if (c == NULL || path == NULL || strchr(path, '%') != NULL || !split_path(c, path, j)) {
        ag_metrics_refused(AG_PROTO_VAULTAPI, "peer_not_allowed");
        ag_log("warning", "vault_api: %s for %s: permission denied", c ? c->name : "unknown or missing token",
               path ? path : "?");
        free(j);
        free(p);
        send_json(req, 403, "{\"errors\":[\"permission denied\"]}\n");
        return;
    }
    if (query != NULL && query[0] != '\0') {
        char *end = NULL;
        long long v = strncmp(query, "version=", 8) == 0 ? strtoll(query + 8, &end, 10) : -1;
        if (j->kv_version != 2 || v < 0 || end == NULL || *end != '\0') {
            free(j);
            free(p);
            send_json(req, 400, "{\"errors\":[\"unsupported query (only ?version=N on KV v2 reads)\"]}\n");
            return;
        }
        j->version = v;
    }
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    if (is_unix) {
        struct ucred cr;
        socklen_t cl = sizeof cr;
        struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
        if (bev != NULL && getsockopt(bufferevent_getfd(bev), SOL_SOCKET, SO_PEERCRED, &cr, &cl) == 0)
            snprintf(j->peer_desc, sizeof j->peer_desc, "peer uid=%u gid=%u pid=%d", (unsigned)cr.uid,
                     (unsigned)cr.gid, (int)cr.pid);
    } else {
        char *host = NULL;
        ev_uint16_t port = 0;
        evhttp_connection_get_peer(evcon, &host, &port); /* TCP_NODELAY: set on the listener */
        snprintf(j->peer_desc, sizeof j->peer_desc, "peer addr=%s:%u", host ? host : "?", (unsigned)port);
    }
    j->conf = ag_conf_ref(conf);
    j->proto = AG_PROTO_VAULTAPI;
    j->client = c;
    j->conn = p;
    p->req = req;
    p->evcon = evcon;
    evhttp_connection_set_closecb(evcon, on_conn_close, p);
    /* a cache hit is answered at once, on the loop (it cannot block); anything else in the pool */
    if (ag_inline_allowed(conf) && ag_lookup_inline(j)) {
        ag_metrics_inline(AG_PROTO_VAULTAPI);
        ag_api_job_done(j);
    } else
        ag_pool_submit(j);
}

static struct evhttp *new_http(struct event_base *base, void *arg)
{
    struct evhttp *h = evhttp_new(base);
    if (h == NULL)
        return NULL;
    evhttp_set_timeout(h, 30);
    evhttp_set_max_headers_size(h, 16384);
    evhttp_set_max_body_size(h, 65536);
    evhttp_set_allowed_methods(h, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                      EVHTTP_REQ_HEAD | EVHTTP_REQ_PATCH);
    evhttp_set_gencb(h, on_request, arg);
    return h;
}

/* Each TCP connection of an HTTPS listener gets its own TLS server session. */
static struct bufferevent *tls_bev(struct event_base *base, void *arg)
{
    (void)arg;
    SSL *ssl = SSL_new(g_ssl);
    if (ssl == NULL)
        return NULL;
    return bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
}

static int tls_setup(const struct ag_api_conf *api, char *err, size_t n)
{
    g_ssl = SSL_CTX_new(TLS_server_method());
    if (g_ssl == NULL || SSL_CTX_set_min_proto_version(g_ssl, TLS1_2_VERSION) != 1 ||
        SSL_CTX_use_certificate_chain_file(g_ssl, api->tls_cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(g_ssl, api->tls_key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(g_ssl) != 1) {
        unsigned long e = ERR_get_error();
        char buf[256];
        ERR_error_string_n(e, buf, sizeof buf);
        snprintf(err, n, "vault_api.tls_cert/tls_key: %s: %s", api->tls_cert, buf);
        ERR_clear_error();
        return -1;
    }
    SSL_CTX_set_options(g_ssl, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    /* no TLS 1.3 session tickets: the clients this listener is for do not resume (KumoMTA's
     * vaultrs builds a new client, with an empty session store, for every read; keep-alive
     * clients keep their connection), so the two tickets OpenSSL would encrypt and write after
     * every handshake are wasted work on each new connection (bench section 2k: ~10 % of it) */
    SSL_CTX_set_num_tickets(g_ssl, 0);
    return 0;
}

int ag_api_open(struct event_base *base, const struct ag_conf *conf, char *err, size_t n)
{
    const struct ag_api_conf *api = &conf->api;
    if (!api->enabled)
        return 0;
    if (api->host != NULL) {
        if (api->tls_cert == NULL && !api->plain_http) { /* conf.c refuses this; fail closed anyway */
            snprintf(err, n, "vault_api.listen: neither TLS files nor tls = false");
            return -1;
        }
        g_tcp = new_http(base, NULL);
        if (g_tcp != NULL && api->tls_cert != NULL) {
            if (tls_setup(api, err, n) != 0)
                return -1;
            evhttp_set_bevcb(g_tcp, tls_bev, NULL);
        }
        struct evhttp_bound_socket *bs = g_tcp != NULL ? evhttp_bind_socket_with_handle(g_tcp, api->host, (ev_uint16_t)api->port) : NULL;
        if (bs == NULL) {
            snprintf(err, n, "vault_api.listen: cannot listen on %s:%d", api->host, api->port);
            return -1;
        }
        /* headers and body leave in separate writes: without TCP_NODELAY the body waits for the
         * client's delayed ACK (~40 ms per request). Set once on the listener: Linux copies it to
         * every accepted socket (no setsockopt per request). */
        int one = 1;
        if (setsockopt(evhttp_bound_socket_get_fd(bs), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0) {
            snprintf(err, n, "vault_api.listen: TCP_NODELAY: %s", strerror(errno));
            return -1;
        }
    }
    if (api->socket != NULL) {
        struct stat st;
        if (lstat(api->socket, &st) == 0 && !S_ISSOCK(st.st_mode)) {
            snprintf(err, n, "vault_api.socket: %s exists and is not a socket", api->socket);
            return -1;
        }
        unlink(api->socket);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        struct sockaddr_un sa;
        memset(&sa, 0, sizeof sa);
        sa.sun_family = AF_UNIX;
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", api->socket);
        mode_t old = umask(0177);
        int b = fd >= 0 ? bind(fd, (struct sockaddr *)&sa, sizeof sa) : -1;
        umask(old);
        if (b != 0 || chmod(api->socket, api->mode) != 0 ||
            (api->has_group && chown(api->socket, (uid_t)-1, api->group) != 0) || listen(fd, SOMAXCONN) != 0) {
            snprintf(err, n, "vault_api.socket: cannot listen on %s: %s", api->socket, strerror(errno));
            if (fd >= 0)
                close(fd);
            return -1;
        }
        g_unix_path = strdup(api->socket);
        g_unix = new_http(base, (void *)1);
        struct evconnlistener *l = evconnlistener_new(base, NULL, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0 /* already listening (SOMAXCONN) */, fd);
        if (g_unix == NULL || l == NULL || evhttp_bind_listener(g_unix, l) == NULL) {
            snprintf(err, n, "vault_api.socket: cannot serve %s", api->socket);
            return -1;
        }
    }
    return 0;
}

void ag_api_close(void)
{
    if (g_tcp != NULL)
        evhttp_free(g_tcp);
    if (g_unix != NULL)
        evhttp_free(g_unix);
    g_tcp = g_unix = NULL;
    if (g_ssl != NULL)
        SSL_CTX_free(g_ssl);
    g_ssl = NULL;
    if (g_unix_path != NULL)
        unlink(g_unix_path);
    free(g_unix_path);
    g_unix_path = NULL;
}
