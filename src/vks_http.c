/*
 * vks_http: pooled libcurl transport with Vault's retry/redirect rules (see vks_http.h).
 */
#include "vks_http.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "vks_curlmem.h"
#include "vks_fork.h"
#include "vks_redact.h"
#include "vks_secmem.h"

#define SMALL_BODY   (64 * 1024)
#define HDR_CAP      (VKS_SECRET_MAX + 64)
#define URL_MAX      4096
#define HEADERS_MAX  (64 * 1024)   /* all response header lines of one answer (Vault sends < 1 KiB) */

enum { N_NODE = 6, N_SOCK = 4 };

struct vks_http_lease {
    CURL *easy;
    vks_scratch small;           /* first 64 KiB of a body                                  */
    vks_scratch big;             /* opened when a body outgrows small (cap = max + 1)       */
    vks_scratch *cur;            /* where the body currently is                             */
    bool overflow;
    size_t hdr_bytes;            /* response header bytes seen (HEADERS_MAX)                */
    bool hdr_overflow;
    size_t max;
    vks_scratch hdr;             /* "X-Vault-Token: ..." (secret)                           */
    struct curl_slist nodes[N_NODE];
    struct curl_slist connect_to;
    char ns_line[512];
    char connect_to_line[600];
    char location[URL_MAX];
    bool have_location;
    char errbuf[CURL_ERROR_SIZE];
    struct vks_http_lease *next;
    struct vks_http_lease *out_prev, *out_next; /* on the pool's list of leases handed out */
    int socks[N_SOCK];           /* this handle's open sockets (-1 = none), for a forked child */
};

struct vks_http {
    struct vks_http_config cfg;  /* strings owned */
    CURLSH *share;
    pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST];
    pthread_mutex_t lock;        /* pool and stats */
    struct vks_http_lease *idle;
    struct vks_http_lease *out;  /* leases handed out (a forked child neutralises their sockets) */
    struct vks_http_stats stats;
    atomic_ulong fork_seen;      /* the fork generation the pool and locks belong to (vks_fork) */
    CURLSH *stale_share;         /* a parent's share still used by a vanished thread's lease   */
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_OK;

/* libcurl is initialised by vks_curlmem (curl_global_init_mem with wiping allocators), before
 * any other curl call of ours; when the host initialised libcurl first, curl keeps its own malloc
 * (docs/internals/curlmem.md). */
/* Held from socket() until the new descriptor is in its lease's list (and from close() until it
 * is out of it), while a lease moves between a client's idle and handed-out lists, and around
 * fork(): a child can then never inherit a socket that no lease lists (one opened by another
 * thread at the moment of the fork), nor a lease that is on neither list or half-linked.
 * A leaf lock: nothing is taken under it (it is taken inside h->lock, never the other way). */
static pthread_mutex_t g_sock_lock = PTHREAD_MUTEX_INITIALIZER;

static void sock_fork_prepare(void) { pthread_mutex_lock(&g_sock_lock); }
static void sock_fork_parent(void) { pthread_mutex_unlock(&g_sock_lock); }
static void sock_fork_child(void) { pthread_mutex_unlock(&g_sock_lock); }

static void global_init(void)
{
    global_rc = vks_curlmem_install() == VKS_CURLMEM_FAILED ? CURLE_FAILED_INIT : CURLE_OK;
    pthread_atfork(sock_fork_prepare, sock_fork_parent, sock_fork_child);
}

/* Every path into libcurl goes through this first: a curl object allocated before the
 * allocators are installed would later be freed through ours (a header read before the block). */
static vks_status ensure_global(struct vks_err *err)
{
    pthread_once(&global_once, global_init);
    if (global_rc != CURLE_OK)
        return vks_err_set(err, VKS_E_INTERNAL, "libcurl initialisation failed: %s", curl_easy_strerror(global_rc));
    return VKS_OK;
}

int64_t vks_http_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---------------------------------------------------------------- pure helpers */

bool vks_http_should_retry(int curl_code, long status)
{
    if (curl_code != CURLE_OK) {
        switch (curl_code) {
        case CURLE_COULDNT_CONNECT:
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
        case CURLE_SEND_ERROR:
        case CURLE_RECV_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_HTTP2:
        case CURLE_HTTP2_STREAM:
        case CURLE_WEIRD_SERVER_REPLY:
            return true;
        default:
            /* TLS/certificate errors, unsupported scheme, timeouts (the deadline is spent),
             * our own aborts (oversized body) are final. */
            return false;
        }
    }
    if (status == 412 || status == 429)
        return true;
    if (status == 0 || (status >= 500 && status != 501))
        return true;
    return false;
}

long vks_http_backoff_ms(long min_ms, long max_ms, int attempt, double r)
{
    if (min_ms < 0)
        min_ms = 0;
    if (max_ms < min_ms)
        max_ms = min_ms;
    if (attempt < 1)
        attempt = 1;
    if (r < 0)
        r = 0;
    if (r >= 1)
        r = 0.999999;
    double w = ((double)min_ms + r * (double)(max_ms - min_ms)) * attempt;
    return (long)w;
}

bool vks_http_host_is_loopback(const char *host)
{
    if (!host || !*host)
        return false;
    if (strcasecmp(host, "localhost") == 0 || strcasecmp(host, "localhost.") == 0)
        return true;
    if (strcmp(host, "::1") == 0 || strcmp(host, "[::1]") == 0)
        return true;
    struct in_addr a;
    if (inet_pton(AF_INET, host, &a) == 1)
        return (ntohl(a.s_addr) >> 24) == 127;
    return false;
}

static const char *scheme_of(const char *url)
{
    if (strncasecmp(url, "https://", 8) == 0)
        return "https";
    if (strncasecmp(url, "http://", 7) == 0)
        return "http";
    return NULL;
}

vks_status vks_http_check_address(const char *address, bool allow_http, char *out, size_t cap,
                                   struct vks_err *err)
{
    if (!address || !*address)
        return vks_err_set(err, VKS_E_CONFIG, "Vault address is empty");
    /* Never echo user info or a query (they could carry a password or a token). */
    char shown[256];
    vks_redact_url(address, strlen(address), shown, sizeof shown);
    if (strlen(address) >= URL_MAX)
        return vks_err_set(err, VKS_E_CONFIG, "Vault address is too long");
    for (const char *p = address; *p; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f)
            return vks_err_set(err, VKS_E_CONFIG, "Vault address contains spaces or control characters");
    const char *scheme = scheme_of(address);
    if (!scheme)
        return vks_err_set(err, VKS_E_CONFIG,
                           "Vault address '%.200s' must start with https:// (or http:// for loopback)", shown);
    vks_status st = ensure_global(err);
    if (st != VKS_OK)
        return st;
    CURLU *u = curl_url();
    char *host = NULL, *port = NULL, *path = NULL, *user = NULL, *query = NULL, *frag = NULL;
    if (!u)
        return vks_err_set(err, VKS_E_NOMEM, "out of memory parsing the Vault address");
    if (curl_url_set(u, CURLUPART_URL, address, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !host || !*host) {
        st = vks_err_set(err, VKS_E_CONFIG, "invalid Vault address '%.200s'", shown);
        goto out;
    }
    if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK) {
        st = vks_err_set(err, VKS_E_CONFIG, "Vault address must not carry user info");
        goto out;
    }
    if (curl_url_get(u, CURLUPART_QUERY, &query, 0) == CURLUE_OK ||
        curl_url_get(u, CURLUPART_FRAGMENT, &frag, 0) == CURLUE_OK) {
        st = vks_err_set(err, VKS_E_CONFIG, "Vault address '%.200s' must not have a query or fragment", shown);
        goto out;
    }
    if (strcmp(scheme, "http") == 0 && !allow_http && !vks_http_host_is_loopback(host)) {
        st = vks_err_set(err, VKS_E_CONFIG,
                         "plain http:// to '%.200s' refused: use https:// (http is only allowed to loopback "
                         "unless allow_http is set)", shown);
        goto out;
    }
    curl_url_get(u, CURLUPART_PORT, &port, 0);
    curl_url_get(u, CURLUPART_PATH, &path, 0);
    size_t plen = path ? strlen(path) : 0;
    while (plen > 0 && path[plen - 1] == '/')
        plen--;
    int n = snprintf(out, cap, "%s://%s%s%s%.*s", scheme, host, port ? ":" : "", port ? port : "",
                     (int)plen, path ? path : "");
    if (n < 0 || (size_t)n >= cap)
        st = vks_err_set(err, VKS_E_CONFIG, "Vault address '%.200s' is too long", shown);
out:
    curl_free(host);
    curl_free(port);
    curl_free(path);
    curl_free(user);
    curl_free(query);
    curl_free(frag);
    curl_url_cleanup(u);
    return st;
}

bool vks_http_append_path(char *out, size_t cap, size_t *len, const char *p)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = *len;
    const char *seg = p;
    for (;;) {
        const char *end = strchr(seg, '/');
        size_t sl = end ? (size_t)(end - seg) : strlen(seg);
        if ((sl == 1 && seg[0] == '.') || (sl == 2 && seg[0] == '.' && seg[1] == '.'))
            return false;
        if (!end)
            break;
        seg = end + 1;
    }
    for (const unsigned char *c = (const unsigned char *)p; *c; c++) {
        if (isalnum(*c) || *c == '-' || *c == '_' || *c == '.' || *c == '~' || *c == '/') {
            if (o + 1 >= cap)
                return false;
            out[o++] = (char)*c;
        } else {
            if (o + 3 >= cap)
                return false;
            out[o++] = '%';
            out[o++] = hex[*c >> 4];
            out[o++] = hex[*c & 15];
        }
    }
    if (o >= cap)
        return false;
    out[o] = '\0';
    *len = o;
    return true;
}

/* ---------------------------------------------------------------- pool */

static void share_lock(CURL *h, curl_lock_data d, curl_lock_access a, void *u)
{
    (void)h;
    (void)a;
    struct vks_http *http = u;
    if (d >= 0 && d < CURL_LOCK_DATA_LAST)
        pthread_mutex_lock(&http->share_locks[d]);
}

static void share_unlock(CURL *h, curl_lock_data d, void *u)
{
    (void)h;
    struct vks_http *http = u;
    if (d >= 0 && d < CURL_LOCK_DATA_LAST)
        pthread_mutex_unlock(&http->share_locks[d]);
}

static char *dup_or_null(const char *s)
{
    return (s && *s) ? strdup(s) : NULL;
}

/* The TLS session and DNS cache shared by the pool's handles. */
static CURLSH *share_new(struct vks_http *h)
{
    CURLSH *s = curl_share_init();
    if (s) {
        curl_share_setopt(s, CURLSHOPT_LOCKFUNC, share_lock);
        curl_share_setopt(s, CURLSHOPT_UNLOCKFUNC, share_unlock);
        curl_share_setopt(s, CURLSHOPT_USERDATA, h);
        curl_share_setopt(s, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
        curl_share_setopt(s, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    }
    return s;
}

vks_status vks_http_new(const struct vks_http_config *cfg, struct vks_http **out, struct vks_err *err)
{
    if (!cfg || !out)
        return vks_err_set(err, VKS_E_INVALID_ARG, "vks_http_new: bad arguments");
    *out = NULL;
    vks_status gst = ensure_global(err);
    if (gst != VKS_OK)
        return gst;
    struct vks_http *h = calloc(1, sizeof *h);
    if (!h)
        return vks_err_set(err, VKS_E_NOMEM, "out of memory");
    h->cfg = *cfg;
    h->cfg.cacert = dup_or_null(cfg->cacert);
    h->cfg.capath = dup_or_null(cfg->capath);
    h->cfg.client_cert = dup_or_null(cfg->client_cert);
    h->cfg.client_key = dup_or_null(cfg->client_key);
    h->cfg.tls_server_name = dup_or_null(cfg->tls_server_name);
    if (h->cfg.max_response_bytes == 0)
        h->cfg.max_response_bytes = 1024 * 1024;
    if (h->cfg.max_retries < 0)
        h->cfg.max_retries = 0;
    pthread_mutex_init(&h->lock, NULL);
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_init(&h->share_locks[i], NULL);
    atomic_store(&h->fork_seen, vks_fork_generation());
    if (!(h->share = share_new(h))) {
        vks_http_free(h);
        return vks_err_set(err, VKS_E_NOMEM, "out of memory (curl share)");
    }
    *out = h;
    return VKS_OK;
}

/* OpenSSL decrypts each TLS record in place in its read buffer, which it keeps for the connection
 * (OpenSSL's heap, not libcurl's: our allocators do not see it). Cleanse the plaintext once it is
 * handed to curl, and release idle buffers. Our libcurl is the OpenSSL build; with another TLS
 * backend curl answers CURLE_NOT_BUILT_IN to the option and this is never called. */
static CURLcode on_ssl_ctx(CURL *e, void *ssl_ctx, void *u)
{
    (void)e;
    (void)u;
    SSL_CTX_set_options((SSL_CTX *)ssl_ctx, SSL_OP_CLEANSE_PLAINTEXT);
    SSL_CTX_set_mode((SSL_CTX *)ssl_ctx, SSL_MODE_RELEASE_BUFFERS);
    return CURLE_OK;
}

static void lease_destroy(struct vks_http_lease *l)
{
    if (!l)
        return;
    if (l->easy)
        curl_easy_cleanup(l->easy);
    vks_scratch_close(&l->small);
    vks_scratch_close(&l->big);
    vks_scratch_close(&l->hdr);
    free(l);
}

void vks_http_free(struct vks_http *h)
{
    if (!h)
        return;
    struct vks_http_lease *l = h->idle;
    while (l) {
        struct vks_http_lease *n = l->next;
        lease_destroy(l);
        l = n;
    }
    if (h->share)
        curl_share_cleanup(h->share);
    if (h->stale_share)
        curl_share_cleanup(h->stale_share); /* refused (and kept) while a lost lease uses it */
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_destroy(&h->share_locks[i]);
    pthread_mutex_destroy(&h->lock);
    free((char *)h->cfg.cacert);
    free((char *)h->cfg.capath);
    free((char *)h->cfg.client_cert);
    free((char *)h->cfg.client_key);
    free((char *)h->cfg.tls_server_name);
    free(h);
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct vks_http_lease *l = ud;
    size_t n = size * nmemb;
    if (l->overflow)
        return 0;
    if (l->cur->len + n > l->max) {
        l->overflow = true;
        return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
    }
    if (l->cur->len + n > l->cur->cap) {
        /* Outgrew the small buffer: move to a big one (copy, then wipe the small one). */
        if (l->cur != &l->small || vks_scratch_open(l->max, &l->big, NULL) != VKS_OK) {
            l->overflow = true;
            return 0;
        }
        memcpy(l->big.data, l->small.data, l->small.len);
        l->big.len = l->small.len;
        vks_scratch_reset(&l->small);
        l->cur = &l->big;
    }
    memcpy(l->cur->data + l->cur->len, ptr, n);
    l->cur->len += n;
    return n;
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct vks_http_lease *l = ud;
    size_t n = size * nmemb;
    l->hdr_bytes += n;
    if (l->hdr_bytes > HEADERS_MAX) {
        l->hdr_overflow = true;
        return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
    }
    if (n > 9 && strncasecmp(ptr, "location:", 9) == 0) {
        const char *v = ptr + 9;
        size_t vl = n - 9;
        while (vl && (*v == ' ' || *v == '\t')) {
            v++;
            vl--;
        }
        while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
            vl--;
        if (vl < sizeof l->location) {
            memcpy(l->location, v, vl);
            l->location[vl] = '\0';
            l->have_location = true;
        }
    }
    return n;
}

/* curl opens and closes the lease's sockets through these, so a forked child knows every socket
 * of every handle, idle or in the middle of a transfer (CURLINFO_ACTIVESOCKET knows only idle
 * ones). Sockets are close-on-exec. */
static curl_socket_t on_open_socket(void *u, curlsocktype purpose, struct curl_sockaddr *a)
{
    struct vks_http_lease *l = u;
    (void)purpose;
    pthread_mutex_lock(&g_sock_lock);
    int fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
    for (int i = 0; fd >= 0 && i < N_SOCK; i++)
        if (l->socks[i] < 0) {
            l->socks[i] = fd;
            break;
        }
    pthread_mutex_unlock(&g_sock_lock);
    return fd >= 0 ? fd : CURL_SOCKET_BAD;
}

static int on_close_socket(void *u, curl_socket_t fd)
{
    struct vks_http_lease *l = u;
    pthread_mutex_lock(&g_sock_lock);
    for (int i = 0; i < N_SOCK; i++)
        if (l->socks[i] == (int)fd)
            l->socks[i] = -1;
    int rc = close((int)fd);
    pthread_mutex_unlock(&g_sock_lock);
    return rc;
}

/* In a forked child: every socket of the lease becomes /dev/null in this process only. */
static void lease_neutralise(struct vks_http_lease *l, int nul)
{
    for (int i = 0; i < N_SOCK; i++)
        if (l->socks[i] >= 0)
            (void)dup2(nul, l->socks[i]);
}

static vks_status lease_create(struct vks_http *h, struct vks_http_lease **out, struct vks_err *err)
{
    struct vks_http_lease *l = calloc(1, sizeof *l);
    if (!l)
        return vks_err_set(err, VKS_E_NOMEM, "out of memory");
    size_t small = h->cfg.max_response_bytes < SMALL_BODY ? h->cfg.max_response_bytes : SMALL_BODY;
    vks_status st = vks_scratch_open(small, &l->small, err);
    if (st == VKS_OK)
        st = vks_scratch_open(HDR_CAP, &l->hdr, err);
    if (st != VKS_OK) {
        lease_destroy(l);
        return st;
    }
    l->max = h->cfg.max_response_bytes;
    l->easy = curl_easy_init();
    if (!l->easy) {
        lease_destroy(l);
        return vks_err_set(err, VKS_E_NOMEM, "out of memory (curl handle)");
    }
    CURL *e = l->easy;
    for (int i = 0; i < N_SOCK; i++)
        l->socks[i] = -1;
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, l);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, on_close_socket);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, l);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_SHARE, h->share);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, l);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, l);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, l->errbuf);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    /* HTTP/1.1 only: over h2 the token header would also sit in nghttp2's HPACK table (its own
     * malloc, outside the arena and vks_curlmem) for the connection's life. */
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "vault-keysource/1");
    /* Like the Go client: a configured CA file or directory REPLACES the system trust store
     * (curl would otherwise also trust its built-in bundle/directory). */
    if (h->cfg.cacert || h->cfg.capath) {
        curl_easy_setopt(e, CURLOPT_CAINFO, h->cfg.cacert);
        curl_easy_setopt(e, CURLOPT_CAPATH, h->cfg.capath);
    }
    if (h->cfg.client_cert)
        curl_easy_setopt(e, CURLOPT_SSLCERT, h->cfg.client_cert);
    if (h->cfg.client_key)
        curl_easy_setopt(e, CURLOPT_SSLKEY, h->cfg.client_key);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, h->cfg.skip_verify ? 0L : 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, h->cfg.skip_verify ? 0L : 2L);
    curl_easy_setopt(e, CURLOPT_SSL_CTX_FUNCTION, on_ssl_ctx);
    pthread_mutex_lock(&h->lock);
    h->stats.handles++;
    pthread_mutex_unlock(&h->lock);
    *out = l;
    return VKS_OK;
}

/* Leases lost by a fork (their threads did not survive it): never touched again, still reachable. */
static struct vks_http_lease *g_graveyard;

/*
 * First use in a forked child (vks_fork_sync). The idle connections are the parent's: their TLS
 * state (sequence numbers, keys) and their sockets are shared with it, so one byte sent or read
 * here would break the parent's next request, or steal its answer. Each such socket is replaced
 * by /dev/null in this process (dup2: the number stays taken, the parent's socket is untouched)
 * before curl closes the handle, so curl's TLS goodbye goes nowhere. A new share handle gives the
 * child its own TLS sessions and DNS cache; locks start afresh (their holders do not exist here).
 */
static void http_after_fork(void *arg)
{
    struct vks_http *h = arg;
    pthread_mutex_init(&h->lock, NULL);
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_init(&h->share_locks[i], NULL);
    int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
    /* leases that threads of the parent were using: those threads are gone; the handles stay in
     * the middle of their transfer forever (kept reachable in the graveyard), their sockets are
     * replaced by /dev/null */
    for (struct vks_http_lease *b = h->out, *bn; b; b = bn) {
        bn = b->out_next;
        if (nul >= 0)
            lease_neutralise(b, nul);
        b->next = g_graveyard;
        g_graveyard = b;
    }
    h->out = NULL;
    struct vks_http_lease *l = h->idle;
    h->idle = NULL;
    while (l) {
        struct vks_http_lease *next = l->next;
        if (nul < 0) { /* cannot neutralise it: abandon the handle rather than touch the socket */
            l->next = g_graveyard;
            g_graveyard = l;
            l = next;
            continue;
        }
        lease_neutralise(l, nul);
        lease_destroy(l);
        l = next;
    }
    if (nul >= 0)
        close(nul);
    CURLSH *fresh = share_new(h);
    if (fresh) {
        if (curl_share_cleanup(h->share) != CURLSHE_OK && !h->stale_share)
            h->stale_share = h->share; /* a lease of a thread that did not survive the fork */
        h->share = fresh;
    }
}

/* Puts l on the handed-out list (h->lock and g_sock_lock held). */
static void out_push_locked(struct vks_http *h, struct vks_http_lease *l)
{
    l->next = NULL;
    l->out_prev = NULL;
    l->out_next = h->out;
    if (h->out)
        h->out->out_prev = l;
    h->out = l;
}

/* An idle lease moves to the handed-out list in one critical section that fork also excludes
 * (g_sock_lock), so a child always finds it on one list or the other; a new lease has no socket
 * yet (curl opens one during the transfer, when the lease is already listed). */
static vks_status lease_get(struct vks_http *h, struct vks_http_lease **out, struct vks_err *err)
{
    vks_fork_sync(&h->fork_seen, http_after_fork, h);
    pthread_mutex_lock(&h->lock);
    pthread_mutex_lock(&g_sock_lock);
    struct vks_http_lease *l = h->idle;
    if (l) {
        h->idle = l->next;
        out_push_locked(h, l);
    }
    pthread_mutex_unlock(&g_sock_lock);
    pthread_mutex_unlock(&h->lock);
    if (!l) {
        vks_status st = lease_create(h, &l, err);
        if (st != VKS_OK)
            return st;
        pthread_mutex_lock(&h->lock);
        pthread_mutex_lock(&g_sock_lock);
        out_push_locked(h, l);
        pthread_mutex_unlock(&g_sock_lock);
        pthread_mutex_unlock(&h->lock);
    }
    *out = l;
    return VKS_OK;
}

static void lease_reset_body(struct vks_http_lease *l)
{
    vks_scratch_reset(&l->small);
    if (l->big.data)
        vks_scratch_close(&l->big);
    l->cur = &l->small;
    l->overflow = false;
    l->hdr_bytes = 0;
    l->hdr_overflow = false;
    l->have_location = false;
    l->location[0] = '\0';
    l->errbuf[0] = '\0';
}

void vks_http_release(struct vks_http *h, struct vks_http_lease *l)
{
    if (!l)
        return;
    lease_reset_body(l);
    vks_scratch_reset(&l->hdr);
    /* The token header nodes point into hdr: drop every reference to them. */
    curl_easy_setopt(l->easy, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(l->easy, CURLOPT_CONNECT_TO, NULL);
    curl_easy_setopt(l->easy, CURLOPT_POSTFIELDS, NULL);
    curl_easy_setopt(l->easy, CURLOPT_CUSTOMREQUEST, NULL);
    /* memcpy carried the body (and the token) through vector registers of this thread */
    vks_curlmem_scrub_registers();
    pthread_mutex_lock(&h->lock);
    pthread_mutex_lock(&g_sock_lock); /* fork sees the lease on exactly one list */
    if (l->out_prev)
        l->out_prev->out_next = l->out_next;
    else
        h->out = l->out_next;
    if (l->out_next)
        l->out_next->out_prev = l->out_prev;
    l->out_prev = l->out_next = NULL;
    l->next = h->idle;
    h->idle = l;
    pthread_mutex_unlock(&g_sock_lock);
    pthread_mutex_unlock(&h->lock);
}

void vks_http_get_stats(struct vks_http *h, struct vks_http_stats *out)
{
    vks_fork_sync(&h->fork_seen, http_after_fork, h);
    pthread_mutex_lock(&h->lock);
    *out = h->stats;
    pthread_mutex_unlock(&h->lock);
}

/* Thread-local xorshift for the backoff jitter (no need for cryptographic quality). */
static double jitter(void)
{
    static _Thread_local uint64_t s;
    if (s == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        s = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)&s;
        if (s == 0)
            s = 0x9E3779B97F4A7C15ull;
    }
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return (double)(s >> 11) / (double)(1ull << 53);
}

static void sleep_ms(long ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* origin of a URL for messages: scheme://host[:port] */
static void origin_of(const char *url, char *out, size_t cap)
{
    const char *p = strstr(url, "://");
    if (!p) {
        snprintf(out, cap, "?");
        return;
    }
    int slen = (int)(p - url) + 3;
    p += 3;
    size_t n = strcspn(p, "/?#");
    const char *at = memchr(p, '@', n);
    if (at) { /* never show user info */
        n -= (size_t)(at + 1 - p);
        p = at + 1;
    }
    snprintf(out, cap, "%.*s%.*s", slen, url, (int)n, p);
}

/* Prepares the header list (nodes owned by the lease; the token line lives in scratch memory). */
static vks_status set_headers(struct vks_http_lease *l, const struct vks_http_request *req, struct vks_err *err)
{
    int n = 0;
    l->nodes[n++].data = (char *)"X-Vault-Request: true";
    if (req->token && req->token_len) {
        static const char pfx[] = "X-Vault-Token: ";
        for (size_t i = 0; i < req->token_len; i++)
            if (req->token[i] < 0x21 || req->token[i] > 0x7e)
                return vks_err_set(err, VKS_E_AUTH_FAILED,
                                   "the Vault token contains non-printable characters (not sent)");
        if (sizeof pfx + req->token_len > l->hdr.cap)
            return vks_err_set(err, VKS_E_AUTH_FAILED, "the Vault token is too long");
        vks_scratch_reset(&l->hdr);
        memcpy(l->hdr.data, pfx, sizeof pfx - 1);
        memcpy(l->hdr.data + sizeof pfx - 1, req->token, req->token_len);
        l->hdr.data[sizeof pfx - 1 + req->token_len] = '\0';
        l->hdr.len = sizeof pfx + req->token_len;
        l->nodes[n++].data = (char *)l->hdr.data;
    }
    if (req->namespace_ && *req->namespace_) {
        for (const char *p = req->namespace_; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f)
                return vks_err_set(err, VKS_E_CONFIG, "Vault namespace contains control characters");
        int k = snprintf(l->ns_line, sizeof l->ns_line, "X-Vault-Namespace: %s", req->namespace_);
        if (k < 0 || (size_t)k >= sizeof l->ns_line)
            return vks_err_set(err, VKS_E_CONFIG, "Vault namespace is too long");
        l->nodes[n++].data = l->ns_line;
    }
    if (req->body) {
        l->nodes[n++].data = req->method && strcmp(req->method, "PATCH") == 0
                                 ? (char *)"Content-Type: application/merge-patch+json"
                                 : (char *)"Content-Type: application/json";
        l->nodes[n++].data = (char *)"Expect:";
    }
    for (int i = 0; i < n; i++)
        l->nodes[i].next = (i + 1 < n) ? &l->nodes[i + 1] : NULL;
    curl_easy_setopt(l->easy, CURLOPT_HTTPHEADER, &l->nodes[0]);
    return VKS_OK;
}

/*
 * Sets the URL; with tls_server_name (https only) the URL's host becomes that name (SNI and
 * certificate check) and CONNECT_TO sends the connection to the real host and port.
 */
static vks_status set_url(struct vks_http *h, struct vks_http_lease *l, const char *url, struct vks_err *err)
{
    curl_easy_setopt(l->easy, CURLOPT_CONNECT_TO, NULL);
    if (!h->cfg.tls_server_name || strcmp(scheme_of(url), "https") != 0) {
        curl_easy_setopt(l->easy, CURLOPT_URL, url);
        return VKS_OK;
    }
    CURLU *u = curl_url();
    char *host = NULL, *port = NULL, *nu = NULL;
    vks_status st = VKS_OK;
    if (!u || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK ||
        curl_url_set(u, CURLUPART_HOST, h->cfg.tls_server_name, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_URL, &nu, 0) != CURLUE_OK) {
        st = vks_err_set(err, VKS_E_CONFIG, "cannot apply VAULT_TLS_SERVER_NAME '%.100s' to the Vault address",
                         h->cfg.tls_server_name);
        goto out;
    }
    snprintf(l->connect_to_line, sizeof l->connect_to_line, "::%s:%s", host, port);
    l->connect_to.data = l->connect_to_line;
    l->connect_to.next = NULL;
    curl_easy_setopt(l->easy, CURLOPT_CONNECT_TO, &l->connect_to);
    curl_easy_setopt(l->easy, CURLOPT_URL, nu);
out:
    curl_free(host);
    curl_free(port);
    curl_free(nu);
    curl_url_cleanup(u);
    return st;
}

/*
 * One code per transport fault (docs/errors.md, "Transport faults"), every one of them transient
 * for the cache (stale-if-error):
 *   refused, reset, closed without an answer, DNS failure          -> unavailable (default)
 *   deadline                                                       -> timeout
 *   TLS handshake, certificate, host name                          -> tls
 *   an answer that is not HTTP/1.x, headers over HEADERS_MAX or one
 *   header line over curl's limit, body over the cap, body cut short -> bad_response
 * Only a URL we could not build is config, and only a real allocation failure out_of_memory.
 */
static vks_status map_curl_error(CURLcode rc, struct vks_http_lease *l, const char *what, const char *origin,
                                 struct vks_err *err)
{
    const char *detail = l->errbuf[0] ? l->errbuf : curl_easy_strerror(rc);
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
        return vks_err_set(err, VKS_E_TIMEOUT, "%s at %s: timed out (deadline reached)", what, origin);
    case CURLE_WRITE_ERROR:
        if (l->hdr_overflow)
            return vks_err_set(err, VKS_E_BAD_RESPONSE, "%s at %s: response headers larger than %d bytes (refused)",
                               what, origin, HEADERS_MAX);
        if (l->overflow)
            return vks_err_set(err, VKS_E_BAD_RESPONSE, "%s at %s: response larger than %zu bytes (refused)",
                               what, origin, l->max);
        return vks_err_set(err, VKS_E_BAD_RESPONSE, "%s at %s: could not store the response", what, origin);
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_USE_SSL_FAILED:
        return vks_err_set(err, VKS_E_TLS, "%s at %s: TLS failure: %.200s", what, origin, detail);
    case CURLE_UNSUPPORTED_PROTOCOL: /* the scheme was checked before: curl's "Received HTTP/0.9" */
    case CURLE_WEIRD_SERVER_REPLY:
        return vks_err_set(err, VKS_E_BAD_RESPONSE, "%s at %s: the answer is not HTTP (%.160s)", what, origin,
                           detail);
#if LIBCURL_VERSION_NUM >= 0x080600
    case CURLE_TOO_LARGE:
        return vks_err_set(err, VKS_E_BAD_RESPONSE, "%s at %s: response header too large (%.160s)", what, origin,
                           detail);
#endif
    case CURLE_URL_MALFORMAT:
        return vks_err_set(err, VKS_E_CONFIG, "%s at %s: %.200s", what, origin, detail);
    case CURLE_OUT_OF_MEMORY: {
        /* curl < 8.6 reports an answer whose header line overruns its 100 KiB limit as out of
         * memory (CURLE_TOO_LARGE since): once our request is out, that is what it means. */
        long sent = 0;
        curl_easy_getinfo(l->easy, CURLINFO_REQUEST_SIZE, &sent);
        if (sent > 0 || strstr(l->errbuf, "header"))
            return vks_err_set(err, VKS_E_BAD_RESPONSE, "%s at %s: response header too large (%.160s)", what,
                               origin, detail);
        return vks_err_set(err, VKS_E_NOMEM, "%s at %s: out of memory", what, origin);
    }
    case CURLE_PARTIAL_FILE:
        /* Like the Go client: a body cut short is read after the retry decision, so it is final. */
        return vks_err_set(err, VKS_E_BAD_RESPONSE, "%s at %s: truncated response (%.160s)", what, origin, detail);
    default:
        return vks_err_set(err, VKS_E_UNAVAILABLE, "%s at %s: %.200s", what, origin, detail);
    }
}

/* "scheme://host:port" of url, host lower-cased and the default port made explicit, to compare
 * authorities. False when url cannot be parsed. */
static bool authority_of(const char *url, char *out, size_t cap)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL;
    bool ok = false;
    if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK) {
        for (char *p = host; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        int n = snprintf(out, cap, "%s://%s:%s", scheme, host, port);
        ok = n > 0 && (size_t)n < cap;
    }
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    return ok;
}

/*
 * The one redirect we follow (a Vault standby answering 307, reference 4.3), and only within the
 * same authority (scheme, host and port) as the request: the token header, a namespace and an
 * AppRole login body never leave for another host. Vault's Go client follows to any host; we refuse
 * instead of following without the token, because the token-less request would come back 403 and
 * read as permission_denied, which drops cached values. A refusal (another host or port, https to
 * http, a second redirect) is VKS_E_UNAVAILABLE: the node asked cannot answer here, like a standby
 * without an active node (transient: the cache answers stale). A Location that cannot be used is
 * VKS_E_BAD_RESPONSE. On success url and origin name the target.
 */
static vks_status follow_redirect(struct vks_http_lease *l, long status, bool redirected, const char *what,
                                  char *url, size_t url_cap, char *origin, size_t origin_cap, struct vks_err *err)
{
    if (redirected)
        return vks_err_set(err, VKS_E_UNAVAILABLE, "%s at %s: redirected more than once (HTTP %ld)", what, origin,
                           status);
    if (!l->have_location)
        return vks_err_set(err, VKS_E_BAD_RESPONSE, "%s at %s: HTTP %ld redirect without Location", what, origin,
                           status);
    /* Resolve a relative Location against the current URL. */
    CURLU *u = curl_url();
    char *nu = NULL;
    char from_auth[300], to_auth[300];
    if (!u || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_set(u, CURLUPART_URL, l->location, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_URL, &nu, 0) != CURLUE_OK || strlen(nu) >= url_cap || !scheme_of(nu) ||
        !authority_of(url, from_auth, sizeof from_auth) || !authority_of(nu, to_auth, sizeof to_auth)) {
        curl_free(nu);
        curl_url_cleanup(u);
        return vks_err_set(err, VKS_E_BAD_RESPONSE, "%s at %s: unusable redirect Location", what, origin);
    }
    curl_url_cleanup(u);
    char to[256];
    origin_of(nu, to, sizeof to);
    if (strcmp(from_auth, to_auth) != 0) {
        bool downgrade = strcmp(scheme_of(url), "https") == 0 && strcmp(scheme_of(nu), "http") == 0;
        curl_free(nu);
        return vks_err_set(err, VKS_E_UNAVAILABLE,
                           "%s: redirect from %s to %s refused (%s): the token is only sent to the configured "
                           "Vault address; point it at the active node or a load balancer",
                           what, origin, to, downgrade ? "https to http downgrade" : "another host or port");
    }
    snprintf(url, url_cap, "%s", nu);
    curl_free(nu);
    snprintf(origin, origin_cap, "%s", to);
    return VKS_OK;
}

vks_status vks_http_do(struct vks_http *h, const struct vks_http_request *req,
                       struct vks_http_response *resp, struct vks_http_lease **lease_out,
                       struct vks_err *err)
{
    if (!h || !req || !req->url || !resp || !lease_out)
        return vks_err_set(err, VKS_E_INVALID_ARG, "vks_http_do: bad arguments");
    *lease_out = NULL;
    memset(resp, 0, sizeof *resp);
    const char *what = req->what ? req->what : "Vault request";
    bool post = req->method && (strcmp(req->method, "POST") == 0 || strcmp(req->method, "PATCH") == 0);
    /* PATCH (with a body), DELETE and LIST (without) go through CUSTOMREQUEST; GET/POST reset it,
       since the handle is reused by the next request */
    bool custom = req->method && strcmp(req->method, "GET") != 0 && strcmp(req->method, "POST") != 0;
    if (custom && strcmp(req->method, "PATCH") != 0 && strcmp(req->method, "DELETE") != 0 &&
        strcmp(req->method, "LIST") != 0)
        return vks_err_set(err, VKS_E_INVALID_ARG, "%s: unsupported method", what);
    char url[URL_MAX];
    char origin[256];
    if (strlen(req->url) >= sizeof url)
        return vks_err_set(err, VKS_E_CONFIG, "%s: URL too long", what);
    strcpy(url, req->url);
    origin_of(url, origin, sizeof origin);
    if (!scheme_of(url))
        return vks_err_set(err, VKS_E_CONFIG, "%s: address %s is not http(s)", what, origin);

    struct vks_http_lease *l = NULL;
    vks_status st = lease_get(h, &l, err);
    if (st != VKS_OK)
        return st;
    st = set_headers(l, req, err);
    if (st != VKS_OK)
        goto fail;
    if (post) {
        curl_easy_setopt(l->easy, CURLOPT_POST, 1L);
        curl_easy_setopt(l->easy, CURLOPT_POSTFIELDS, req->body ? req->body : "");
        curl_easy_setopt(l->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(req->body ? req->body_len : 0));
    } else {
        curl_easy_setopt(l->easy, CURLOPT_HTTPGET, 1L);
    }
    curl_easy_setopt(l->easy, CURLOPT_CUSTOMREQUEST, custom ? req->method : NULL);

    int retries = 0;
    bool redirected = false;
    CURLcode last_rc = CURLE_OK;
    for (;;) {
        int64_t left = req->deadline_ms - vks_http_now_ms();
        if (left <= 0) {
            st = vks_err_set(err, VKS_E_TIMEOUT, "%s at %s: timed out (deadline reached after %d attempt%s)",
                             what, origin, resp->attempts, resp->attempts == 1 ? "" : "s");
            goto fail;
        }
        lease_reset_body(l);
        st = set_url(h, l, url, err);
        if (st != VKS_OK)
            goto fail;
        curl_easy_setopt(l->easy, CURLOPT_TIMEOUT_MS, (long)left);
        curl_easy_setopt(l->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)(left < 10000 ? left : 10000));
        last_rc = curl_easy_perform(l->easy);
        resp->attempts++;
        long status = 0, connects = 0;
        curl_easy_getinfo(l->easy, CURLINFO_NUM_CONNECTS, &connects);
        if (last_rc == CURLE_OK)
            curl_easy_getinfo(l->easy, CURLINFO_RESPONSE_CODE, &status);
        pthread_mutex_lock(&h->lock);
        h->stats.requests++;
        h->stats.connects += (unsigned long)connects;
        pthread_mutex_unlock(&h->lock);

        if (last_rc == CURLE_OK && (status == 301 || status == 302 || status == 307 || status == 308)) {
            st = follow_redirect(l, status, redirected, what, url, sizeof url, origin, sizeof origin, err);
            if (st != VKS_OK)
                goto fail;
            redirected = true;
            continue;
        }

        bool retry = vks_http_should_retry((int)last_rc, last_rc == CURLE_OK ? status : 0);
        if (retry && retries < h->cfg.max_retries) {
            long wait = vks_http_backoff_ms(h->cfg.min_retry_wait_ms, h->cfg.max_retry_wait_ms, retries + 1, jitter());
            int64_t remain = req->deadline_ms - vks_http_now_ms();
            if (wait < remain) {
                retries++;
                pthread_mutex_lock(&h->lock);
                h->stats.retries++;
                pthread_mutex_unlock(&h->lock);
                sleep_ms(wait);
                continue;
            }
        }
        if (last_rc != CURLE_OK) {
            st = map_curl_error(last_rc, l, what, origin, err);
            if (resp->attempts > 1 && st != VKS_E_TIMEOUT) {
                size_t ml = strlen(err ? err->msg : "");
                if (err && ml + 32 < sizeof err->msg)
                    snprintf(err->msg + ml, sizeof err->msg - ml, " (after %d attempts)", resp->attempts);
            }
            goto fail;
        }
        resp->status = status;
        resp->body = (const char *)l->cur->data;
        resp->body_len = l->cur->len;
        snprintf(resp->final_origin, sizeof resp->final_origin, "%s", origin);
        *lease_out = l;
        return VKS_OK;
    }
fail:
    vks_http_release(h, l);
    return st;
}
