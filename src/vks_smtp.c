/*
 * vks_smtp: the SMTP AUTH probe (contract and design in vks_smtp.h, docs/internals/smtp.md).
 *
 * One non-blocking socket; every wait (name resolution, connect, read, write, TLS handshake) is a
 * poll bounded by what is left of the one session deadline. The password is only ever copied into
 * a vks_scratch buffer (guarded, locked, non-dumpable), encoded there and wiped before return.
 */
#include "vks_smtp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "vks_base64.h"

#define LINE_MAX_LEN 4096       /* one reply line (RFC 5321 says 512; relays exceed it)        */
#define READ_BUF 8192
#define REPLY_LINES_MAX 200
#define TRANSCRIPT_MAX (32 * 1024)
#define USERNAME_MAX 1024
#define EHLO_MAX 255

struct conn {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    char buf[READ_BUF];
    size_t len;
    char *transcript;
    size_t tlen;
    int64_t deadline;  /* CLOCK_MONOTONIC, ms */
    vks_status status; /* of the first failure                                                */
    const struct vks_smtp_opts *o;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int remaining_ms(const struct conn *c)
{
    int64_t left = c->deadline - now_ms();
    return left <= 0 ? 0 : left > INT32_MAX ? INT32_MAX : (int)left;
}

static void tr_add(struct conn *c, const char *prefix, const char *text, size_t n)
{
    size_t pl = strlen(prefix);
    if (c->transcript == NULL || c->tlen + pl + n + 2 > TRANSCRIPT_MAX)
        return;
    memcpy(c->transcript + c->tlen, prefix, pl);
    c->tlen += pl;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)text[i];
        c->transcript[c->tlen++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
    }
    c->transcript[c->tlen++] = '\n';
    c->transcript[c->tlen] = '\0';
}

static bool fail(struct conn *c, struct vks_smtp_result *r, vks_status st, const char *stage,
                 const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static bool fail(struct conn *c, struct vks_smtp_result *r, vks_status st, const char *stage,
                 const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->error, sizeof r->error, fmt, ap);
    va_end(ap);
    r->stage = stage;
    r->ok = false;
    c->status = st;
    return false;
}

static bool timed_out(struct conn *c, struct vks_smtp_result *r, const char *what)
{
    return fail(c, r, VKS_E_TIMEOUT, r->stage, "%s %s port %d: the session deadline of %d ms passed",
                what, c->o->host, c->o->port, c->o->timeout_ms < 1 ? 1 : c->o->timeout_ms);
}

/* Waits for events on the socket within the deadline: 1 ready, 0 deadline passed. */
static int wait_io(struct conn *c, short events)
{
    for (;;) {
        int ms = remaining_ms(c);
        if (ms == 0)
            return 0;
        struct pollfd p = { .fd = c->fd, .events = events };
        int k = poll(&p, 1, ms);
        if (k > 0)
            return 1;
        if (k == 0)
            return 0;
        if (errno != EINTR)
            return 1; /* let the following read or write report the error */
    }
}

static void ssl_error_text(char *out, size_t n, int saved_errno)
{
    unsigned long e = ERR_get_error();
    if (e == 0)
        snprintf(out, n, "%s", saved_errno ? strerror(saved_errno) : "connection closed");
    else
        ERR_error_string_n(e, out, n);
    ERR_clear_error();
}

/* One TLS call's outcome: true to retry after waiting, false (with r filled) on failure. */
static bool ssl_retry(struct conn *c, struct vks_smtp_result *r, int rc, const char *what)
{
    int saved = errno;
    int e = SSL_get_error(c->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        if (wait_io(c, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT))
            return true;
        return timed_out(c, r, what);
    }
    char t[200];
    if (e == SSL_ERROR_ZERO_RETURN)
        snprintf(t, sizeof t, "the server closed the TLS session");
    else
        ssl_error_text(t, sizeof t, saved);
    return fail(c, r, e == SSL_ERROR_SYSCALL ? VKS_E_UNAVAILABLE : VKS_E_TLS, r->stage,
                "%s %s port %d failed: %s", what, c->o->host, c->o->port, t);
}

static bool conn_write(struct conn *c, const void *data, size_t n, struct vks_smtp_result *r)
{
    const char *p = data;
    while (n > 0) {
        if (c->ssl != NULL) {
            int k = SSL_write(c->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n);
            if (k <= 0) {
                if (!ssl_retry(c, r, k, "TLS write to"))
                    return false;
                continue;
            }
            p += k;
            n -= (size_t)k;
            continue;
        }
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!wait_io(c, POLLOUT))
                return timed_out(c, r, "writing to");
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return fail(c, r, VKS_E_UNAVAILABLE, r->stage, "writing to %s port %d failed: %s",
                        c->o->host, c->o->port, strerror(errno));
        p += w;
        n -= (size_t)w;
    }
    return true;
}

static bool send_cmd(struct conn *c, const char *cmd, struct vks_smtp_result *r)
{
    char line[LINE_MAX_LEN];
    int n = snprintf(line, sizeof line, "%s\r\n", cmd);
    if (n < 0 || (size_t)n >= sizeof line)
        return fail(c, r, VKS_E_INVALID_INPUT, r->stage, "command too long");
    tr_add(c, "C: ", cmd, strlen(cmd));
    return conn_write(c, line, (size_t)n, r);
}

/* Reads more bytes into c->buf (at least one) within the deadline. */
static bool fill(struct conn *c, struct vks_smtp_result *r)
{
    if (c->len >= sizeof c->buf)
        return fail(c, r, VKS_E_BAD_RESPONSE, r->stage,
                    "a reply line from %s port %d is longer than %d bytes", c->o->host, c->o->port,
                    LINE_MAX_LEN);
    for (;;) {
        ssize_t k;
        if (c->ssl != NULL) {
            int m = SSL_read(c->ssl, c->buf + c->len, (int)(sizeof c->buf - c->len));
            if (m <= 0) {
                if (!ssl_retry(c, r, m, "TLS read from"))
                    return false;
                continue;
            }
            k = m;
        } else {
            k = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
            if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                if (!wait_io(c, POLLIN))
                    return timed_out(c, r, "waiting for a reply from");
                continue;
            }
            if (k < 0 && errno == EINTR)
                continue;
            if (k < 0)
                return fail(c, r, VKS_E_UNAVAILABLE, r->stage, "reading from %s port %d failed: %s",
                            c->o->host, c->o->port, strerror(errno));
            if (k == 0 && c->len > 0)
                return fail(c, r, VKS_E_BAD_RESPONSE, r->stage,
                            "%s port %d closed the connection in the middle of a reply line",
                            c->o->host, c->o->port);
            if (k == 0)
                return fail(c, r, VKS_E_UNAVAILABLE, r->stage,
                            "%s port %d closed the connection", c->o->host, c->o->port);
        }
        c->len += (size_t)k;
        return true;
    }
}

/* One reply line "DDD[ -]text" (printable), with the code of the reply's first line when not
 * the first (code_first > 0). Returns the code, or 0 when malformed. */
static int parse_line(const char *line, size_t ln, int code_first)
{
    if (ln < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '9' ||
        line[2] < '0' || line[2] > '9' || (ln > 3 && line[3] != ' ' && line[3] != '-'))
        return 0;
    int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
    return code_first > 0 && code != code_first ? 0 : code;
}

static void reply_append(struct vks_smtp_result *r, size_t *rl, const char *line, size_t ln)
{
    if (*rl > 0 && *rl + 1 < sizeof r->reply)
        r->reply[(*rl)++] = '\n';
    for (size_t i = 0; i < ln && *rl + 1 < sizeof r->reply; i++) {
        if (i == 3) {
            r->reply[(*rl)++] = ' ';
            continue;
        }
        unsigned char ch = (unsigned char)line[i];
        r->reply[(*rl)++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
    }
    r->reply[*rl] = '\0';
}

/* Reads one (possibly multi-line) reply; lines are joined with '\n' into r->reply (text made
 * printable). caps, when non-NULL, receives the text of every line (EHLO keywords), one per '\n'. */
static bool read_reply(struct conn *c, int *code, struct vks_smtp_result *r, char *caps, size_t capsn)
{
    size_t rl = 0, cl = 0;
    int first = 0;
    r->reply[0] = '\0';
    if (caps)
        caps[0] = '\0';
    for (int lines = 0; lines < REPLY_LINES_MAX; lines++) {
        char *nl;
        while ((nl = memchr(c->buf, '\n', c->len)) == NULL)
            if (!fill(c, r))
                return false;
        size_t n = (size_t)(nl - c->buf);
        size_t ln = n > 0 && c->buf[n - 1] == '\r' ? n - 1 : n;
        if (ln >= LINE_MAX_LEN)
            return fail(c, r, VKS_E_BAD_RESPONSE, r->stage,
                        "a reply line from %s port %d is longer than %d bytes", c->o->host,
                        c->o->port, LINE_MAX_LEN);
        char line[LINE_MAX_LEN];
        memcpy(line, c->buf, ln);
        line[ln] = '\0';
        memmove(c->buf, nl + 1, c->len - n - 1);
        c->len -= n + 1;
        tr_add(c, "S: ", line, ln);
        int lc = parse_line(line, ln, first);
        if (lc == 0)
            return fail(c, r, VKS_E_BAD_RESPONSE, r->stage,
                        "malformed reply line from %s port %d (not \"DDD text\" with one code)",
                        c->o->host, c->o->port);
        first = *code = r->code = lc;
        reply_append(r, &rl, line, ln);
        const char *text = ln > 4 ? line + 4 : "";
        if (caps && cl + strlen(text) + 2 < capsn)
            cl += (size_t)snprintf(caps + cl, capsn - cl, "%s\n", text);
        if (ln == 3 || line[3] == ' ')
            return true;
    }
    return fail(c, r, VKS_E_BAD_RESPONSE, r->stage, "a reply from %s port %d has more than %d lines",
                c->o->host, c->o->port, REPLY_LINES_MAX);
}

static bool has_cap(const char *caps, const char *kw)
{
    size_t kl = strlen(kw);
    for (const char *p = caps; p && *p;) {
        const char *e = strchr(p, '\n');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n >= kl && strncasecmp(p, kw, kl) == 0 && (n == kl || p[kl] == ' ' || p[kl] == '='))
            return true;
        p = e ? e + 1 : NULL;
    }
    return false;
}

static bool is_ip_literal(const char *h)
{
    unsigned char tmp[16];
    return inet_pton(AF_INET, h, tmp) == 1 || inet_pton(AF_INET6, h, tmp) == 1;
}

static const char *tls_mode_name(enum vks_smtp_tls m)
{
    static const char *const names[] = { "Opportunistic", "OpportunisticInsecure", "Required",
                                         "RequiredInsecure", "Disabled" };
    return (unsigned)m < 5 ? names[m] : "?";
}

/* Name resolution within the deadline: IP literals at once, names with getaddrinfo_a. A lookup
 * still running at the deadline is cancelled; when glibc cannot cancel it, its request block is
 * left to the resolver thread (a small, bounded leak rather than a wait past the deadline). */
struct gai_req {
    struct gaicb cb;
    struct addrinfo hints;
    char port[16];
    char host[];
};

static bool resolve(struct conn *c, struct vks_smtp_result *r, struct addrinfo **res)
{
    const struct vks_smtp_opts *o = c->o;
    char port[16];
    snprintf(port, sizeof port, "%d", o->port);
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
    if (is_ip_literal(o->host)) {
        hints.ai_flags |= AI_NUMERICHOST;
        int e = getaddrinfo(o->host, port, &hints, res);
        return e == 0 ? true : fail(c, r, VKS_E_UNAVAILABLE, "connect", "cannot use address %s: %s",
                                    o->host, gai_strerror(e));
    }
    size_t hl = strlen(o->host);
    struct gai_req *q = calloc(1, sizeof *q + hl + 1);
    if (q == NULL)
        return fail(c, r, VKS_E_NOMEM, "connect", "out of memory resolving %s", o->host);
    memcpy(q->host, o->host, hl + 1);
    memcpy(q->port, port, sizeof port);
    q->hints = hints;
    q->cb = (struct gaicb){ .ar_name = q->host, .ar_service = q->port, .ar_request = &q->hints };
    struct gaicb *list[1] = { &q->cb };
    struct sigevent sev = { .sigev_notify = SIGEV_NONE };
    if (getaddrinfo_a(GAI_NOWAIT, list, 1, &sev) != 0) {
        free(q);
        return fail(c, r, VKS_E_UNAVAILABLE, "connect", "cannot start resolving %s", o->host);
    }
    int e;
    while ((e = gai_error(&q->cb)) == EAI_INPROGRESS) {
        int ms = remaining_ms(c);
        if (ms == 0)
            break;
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };
        (void)gai_suspend((const struct gaicb *const *)list, 1, &ts);
    }
    if (e == EAI_INPROGRESS) {
        int k = gai_cancel(&q->cb);
        if (k == EAI_NOTCANCELED)
            return timed_out(c, r, "resolving"); /* q belongs to the resolver thread now */
        if (k == EAI_ALLDONE && gai_error(&q->cb) == 0)
            freeaddrinfo(q->cb.ar_result);
        free(q);
        return timed_out(c, r, "resolving");
    }
    *res = q->cb.ar_result;
    free(q);
    return e == 0 ? true : fail(c, r, VKS_E_UNAVAILABLE, "connect", "cannot resolve %s: %s",
                                o->host, gai_strerror(e));
}

/* Connects one address within the deadline: the fd (non-blocking), or -1 with errno set. */
static int connect_one(struct conn *c, const struct addrinfo *ai)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0)
        return -1;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
        return fd;
    if (errno == EINPROGRESS) {
        c->fd = fd;
        if (wait_io(c, POLLOUT)) {
            int soerr = 0;
            socklen_t sl = sizeof soerr;
            if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0)
                return fd;
            errno = soerr ? soerr : ECONNREFUSED;
        } else {
            errno = ETIMEDOUT;
        }
        c->fd = -1;
    }
    int saved = errno;
    close(fd);
    errno = saved;
    return -1;
}

static void peer_text(const struct sockaddr *sa, char *out, size_t n)
{
    const void *a = sa->sa_family == AF_INET6 ? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
                                              : (const void *)&((const struct sockaddr_in *)sa)->sin_addr;
    if (inet_ntop(sa->sa_family, a, out, (socklen_t)n) == NULL)
        snprintf(out, n, "?");
}

/* Connects to the first address that answers and that peer_ok accepts (each address is asked
 * once connected, before any byte is sent or read). */
static bool conn_connect(struct conn *c, struct vks_smtp_result *r)
{
    const struct vks_smtp_opts *o = c->o;
    struct addrinfo *res = NULL;
    if (!resolve(c, r, &res))
        return false;
    int last = ECONNREFUSED;
    char why[256] = "", refused[64] = "";
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        int fd = connect_one(c, ai);
        if (fd < 0) {
            last = errno;
            if (remaining_ms(c) == 0)
                break;
            continue;
        }
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        if (getpeername(fd, (struct sockaddr *)&ss, &sl) != 0) {
            last = errno;
            close(fd);
            continue;
        }
        char addr[64];
        peer_text((struct sockaddr *)&ss, addr, sizeof addr);
        if (o->peer_ok != NULL && !o->peer_ok((struct sockaddr *)&ss, sl, o->peer_ok_arg, why, sizeof why)) {
            snprintf(refused, sizeof refused, "%s", addr);
            close(fd);
            continue;
        }
        snprintf(r->peer, sizeof r->peer, "%s", addr);
        c->fd = fd;
        freeaddrinfo(res);
        return true;
    }
    freeaddrinfo(res);
    if (refused[0])
        return fail(c, r, VKS_E_RESTRICTED, "restrict", "%s port %d: the address %s is not allowed%s%s",
                    o->host, o->port, refused, why[0] ? ": " : "", why);
    if (last == ETIMEDOUT && remaining_ms(c) == 0)
        return timed_out(c, r, "connecting to");
    return fail(c, r, VKS_E_UNAVAILABLE, "connect", "cannot connect to %s port %d: %s", o->host,
                o->port, strerror(last));
}

static bool tls_setup(struct conn *c, struct vks_smtp_result *r)
{
    const struct vks_smtp_opts *o = c->o;
    c->ctx = SSL_CTX_new(TLS_client_method());
    if (c->ctx == NULL)
        return fail(c, r, VKS_E_TLS, "tls", "cannot create a TLS context");
    SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
    if (o->cafile != NULL) {
        if (SSL_CTX_load_verify_locations(c->ctx, o->cafile, NULL) != 1)
            return fail(c, r, VKS_E_TLS, "tls", "cannot load the CA file %s", o->cafile);
    } else {
        SSL_CTX_set_default_verify_paths(c->ctx);
    }
    /* verify, but decide afterwards: the insecure modes may continue without a valid chain */
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_NONE, NULL);
    c->ssl = SSL_new(c->ctx);
    if (c->ssl == NULL)
        return fail(c, r, VKS_E_TLS, "tls", "cannot create a TLS session");
    SSL_set_mode(c->ssl, SSL_MODE_RELEASE_BUFFERS);
    if (is_ip_literal(o->host)) {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), o->host);
    } else {
        SSL_set_tlsext_host_name(c->ssl, o->host);
        SSL_set1_host(c->ssl, o->host);
    }
    SSL_set_fd(c->ssl, c->fd);
    return true;
}

static bool start_tls(struct conn *c, struct vks_smtp_result *r)
{
    r->stage = "tls";
    if (!tls_setup(c, r))
        return false;
    for (;;) {
        ERR_clear_error();
        int k = SSL_connect(c->ssl);
        if (k == 1)
            break;
        if (!ssl_retry(c, r, k, "TLS handshake with")) {
            if (c->status == VKS_E_UNAVAILABLE)
                c->status = VKS_E_TLS;
            return false;
        }
    }
    r->tls = true;
    snprintf(r->tls_version, sizeof r->tls_version, "%s", SSL_get_version(c->ssl));
    X509 *peer = SSL_get1_peer_certificate(c->ssl);
    long vr = SSL_get_verify_result(c->ssl);
    r->tls_verified = peer != NULL && vr == X509_V_OK;
    if (!r->tls_verified)
        snprintf(r->verify_error, sizeof r->verify_error, "%s",
                 peer == NULL ? "no peer certificate" : X509_verify_cert_error_string(vr));
    X509_free(peer);
    return true;
}

/* AUTH PLAIN: "\0user\0password" and "AUTH PLAIN <base64>\r\n" exist only in one scratch buffer
 * (guarded, locked, MADV_DONTDUMP), written with one call and wiped by vks_scratch_close. */
static bool auth_plain(struct conn *c, const vks_secret *pw, struct vks_smtp_result *r)
{
    const struct vks_smtp_opts *o = c->o;
    size_t raw = 1 + o->username_len + 1 + pw->len;
    size_t cap = raw + 11 + VKS_B64_ENCODED_LEN(raw) + 3;
    vks_scratch s;
    struct vks_err e;
    vks_status st = vks_scratch_open(cap, &s, &e);
    if (st != VKS_OK)
        return fail(c, r, st, "auth", "no secure memory for the credential: %s", e.msg);
    unsigned char *plain = s.data;
    char *line = (char *)s.data + raw;
    plain[0] = 0;
    memcpy(plain + 1, o->username, o->username_len);
    plain[1 + o->username_len] = 0;
    if (pw->len > 0)
        memcpy(plain + 2 + o->username_len, pw->data, pw->len);
    memcpy(line, "AUTH PLAIN ", 11);
    size_t enc = vks_b64_encode(plain, raw, line + 11);
    memcpy(line + 11 + enc, "\r\n", 2);
    s.len = raw + 11 + enc + 3;
    r->auth_attempted = true;
    tr_add(c, "C: ", "AUTH PLAIN <redacted>", 21);
    bool ok = conn_write(c, line, 11 + enc + 2, r);
    vks_scratch_close(&s);
    int code = 0;
    if (!ok || !read_reply(c, &code, r, NULL, 0))
        return false;
    if (code != 235)
        return fail(c, r, VKS_OK, "auth", "AUTH PLAIN as %.*s was rejected by %s port %d: %s",
                    (int)(o->username_len > 200 ? 200 : o->username_len), o->username, o->host,
                    o->port, r->reply);
    return true;
}

/* EHLO, then STARTTLS and EHLO again when the mode asks for it; caps holds the last keywords. */
static bool ehlo_and_tls(struct conn *c, struct vks_smtp_result *r, char *caps, size_t capsn)
{
    const struct vks_smtp_opts *o = c->o;
    char cmd[EHLO_MAX + 8];
    int code = 0;
    snprintf(cmd, sizeof cmd, "EHLO %s", o->ehlo_name ? o->ehlo_name : "localhost");
    r->stage = "ehlo";
    if (!send_cmd(c, cmd, r) || !read_reply(c, &code, r, caps, capsn))
        return false;
    if (code != 250)
        return fail(c, r, VKS_OK, "ehlo", "EHLO was refused: %s", r->reply);
    bool required = o->tls == VKS_SMTP_TLS_REQUIRED || o->tls == VKS_SMTP_TLS_REQUIRED_INSECURE;
    bool insecure = o->tls == VKS_SMTP_TLS_OPPORTUNISTIC_INSECURE || o->tls == VKS_SMTP_TLS_REQUIRED_INSECURE;
    if (o->tls == VKS_SMTP_TLS_DISABLED || !has_cap(caps, "STARTTLS")) {
        if (required)
            return fail(c, r, VKS_E_TLS, "starttls",
                        "enable_tls requires TLS but %s did not offer STARTTLS", o->host);
        return true;
    }
    r->stage = "starttls";
    if (!send_cmd(c, "STARTTLS", r) || !read_reply(c, &code, r, NULL, 0))
        return false;
    if (code != 220)
        return fail(c, r, VKS_OK, "starttls", "STARTTLS was refused: %s", r->reply);
    if (c->len != 0)
        return fail(c, r, VKS_E_BAD_RESPONSE, "starttls",
                    "the server sent data after its STARTTLS reply (command injection); "
                    "refusing to continue");
    if (!start_tls(c, r))
        return false;
    if (!r->tls_verified && !insecure)
        return fail(c, r, VKS_E_TLS, "tls",
                    "the certificate of %s is not valid (%s); enable_tls=%s requires a valid "
                    "certificate", o->host, r->verify_error, tls_mode_name(o->tls));
    r->stage = "ehlo";
    if (!send_cmd(c, cmd, r) || !read_reply(c, &code, r, caps, capsn))
        return false;
    if (code != 250)
        return fail(c, r, VKS_OK, "ehlo", "EHLO after STARTTLS was refused: %s", r->reply);
    return true;
}

/* KumoMTA's two checks before the credential leaves: TLS, and a validated certificate. */
static bool may_send_credential(struct conn *c, struct vks_smtp_result *r)
{
    const struct vks_smtp_opts *o = c->o;
    if (o->username == NULL)
        return fail(c, r, VKS_E_INVALID_INPUT, "policy",
                    "no smtp_auth_plain_username: AUTH was not attempted");
    if (!r->tls && !o->allow_without_tls)
        return fail(c, r, VKS_E_TLS, "policy",
                    "TLS is not enabled and AUTH PLAIN requires it; not sending the credential to "
                    "%s port %d (set allow_smtp_auth_plain_without_tls to allow)", o->host, o->port);
    if (r->tls && !r->tls_verified && !o->allow_invalid_cert)
        return fail(c, r, VKS_E_TLS, "policy",
                    "the TLS certificate of %s was not validated (%s) and AUTH PLAIN requires a "
                    "valid certificate; not sending the credential (set "
                    "allow_smtp_auth_plain_without_valid_certificate to allow)",
                    o->host, r->verify_error);
    return true;
}

static bool session(struct conn *c, const vks_secret *pw, struct vks_smtp_result *r)
{
    int code = 0;
    char caps[4096];
    r->stage = "connect";
    if (!conn_connect(c, r))
        return false;
    r->stage = "greeting";
    if (!read_reply(c, &code, r, NULL, 0))
        return false;
    if (code != 220)
        return fail(c, r, VKS_OK, "greeting", "the server did not greet with 220: %s", r->reply);
    if (!ehlo_and_tls(c, r, caps, sizeof caps) || !may_send_credential(c, r))
        return false;
    r->stage = "auth";
    if (!auth_plain(c, pw, r))
        return false;
    /* QUIT within what is left of the deadline; its outcome does not change the answer */
    char okreply[sizeof r->reply];
    memcpy(okreply, r->reply, sizeof okreply);
    int okcode = r->code;
    r->stage = "quit";
    if (send_cmd(c, "QUIT", r))
        (void)read_reply(c, &code, r, NULL, 0);
    memcpy(r->reply, okreply, sizeof okreply);
    r->code = okcode;
    r->ok = true;
    r->error[0] = '\0';
    r->stage = "auth";
    c->status = VKS_OK;
    return true;
}

static vks_status check_opts(const struct vks_smtp_opts *o, const vks_secret *pw, struct vks_err *err)
{
    if (o == NULL || pw == NULL)
        return vks_err_set(err, VKS_E_INVALID_INPUT, "smtp: opts and password are required");
    if (o->host == NULL || o->host[0] == '\0' || strlen(o->host) > 253 ||
        strpbrk(o->host, " \r\n\t") != NULL)
        return vks_err_set(err, VKS_E_INVALID_INPUT, "smtp: host is missing or malformed");
    if (o->port < 1 || o->port > 65535)
        return vks_err_set(err, VKS_E_INVALID_INPUT, "smtp: port %d is out of range (1..65535)", o->port);
    if (o->ehlo_name != NULL) {
        size_t n = strlen(o->ehlo_name);
        bool bad = n == 0 || n > EHLO_MAX;
        for (size_t i = 0; i < n && !bad; i++)
            bad = (unsigned char)o->ehlo_name[i] <= 0x20 || (unsigned char)o->ehlo_name[i] >= 0x7f;
        if (bad)
            return vks_err_set(err, VKS_E_INVALID_INPUT,
                               "smtp: ehlo_name must be 1..%d printable characters without spaces", EHLO_MAX);
    }
    if ((unsigned)o->tls > VKS_SMTP_TLS_DISABLED)
        return vks_err_set(err, VKS_E_INVALID_INPUT, "smtp: tls is not a known mode");
    if (o->username != NULL && (o->username_len > USERNAME_MAX || memchr(o->username, 0, o->username_len)))
        return vks_err_set(err, VKS_E_INVALID_INPUT,
                           "smtp: username must be at most %d bytes without NUL", USERNAME_MAX);
    if (pw->len > VKS_SECRET_MAX || (pw->len > 0 && pw->data == NULL))
        return vks_err_set(err, VKS_E_INVALID_INPUT, "smtp: password is longer than %d bytes", VKS_SECRET_MAX);
    bool nul = false; /* AUTH PLAIN separates fields with NUL: no early exit on the secret */
    for (size_t i = 0; i < pw->len; i++)
        nul |= pw->data[i] == 0;
    if (nul)
        return vks_err_set(err, VKS_E_INVALID_INPUT, "smtp: password contains a NUL byte");
    return VKS_OK;
}

static void make_printable(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
            *s = '?';
}

/* SIGPIPE from a TLS write to a vanished peer: blocked for the session in this thread, and one
 * raised by the session consumed (when one was already pending before, it is left alone). */
struct sigpipe_guard {
    sigset_t old;
    bool pending_before;
};

static void sigpipe_block(struct sigpipe_guard *g)
{
    sigset_t set, pend;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    sigpending(&pend);
    g->pending_before = sigismember(&pend, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &set, &g->old);
}

static void sigpipe_restore(struct sigpipe_guard *g)
{
    sigset_t set, pend;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    sigpending(&pend);
    if (!g->pending_before && sigismember(&pend, SIGPIPE) == 1) {
        const struct timespec zero = { 0, 0 };
        (void)sigtimedwait(&set, NULL, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

vks_status vks_smtp_check_auth(const struct vks_smtp_opts *opts, const vks_secret *password,
                               struct vks_smtp_result *result, struct vks_err *err)
{
    if (result == NULL)
        return vks_err_set(err, VKS_E_INVALID_INPUT, "smtp: result is required");
    memset(result, 0, sizeof *result);
    result->stage = "options";
    vks_status st = check_opts(opts, password, err);
    if (st != VKS_OK) {
        snprintf(result->error, sizeof result->error, "%s", err ? err->msg : "invalid options");
        return st;
    }
    struct conn c = { .fd = -1, .o = opts, .status = VKS_E_INTERNAL };
    c.deadline = now_ms() + (opts->timeout_ms < 1 ? 1 : opts->timeout_ms);
    c.transcript = malloc(TRANSCRIPT_MAX);
    if (c.transcript != NULL)
        c.transcript[0] = '\0';
    ERR_clear_error();
    struct sigpipe_guard sg;
    sigpipe_block(&sg);
    session(&c, password, result);
    if (c.ssl != NULL) {
        (void)SSL_shutdown(c.ssl); /* one non-blocking try: close_notify, no wait */
        SSL_free(c.ssl);
    }
    SSL_CTX_free(c.ctx);
    if (c.fd >= 0)
        close(c.fd);
    sigpipe_restore(&sg);
    vks_wipe(c.buf, sizeof c.buf);
    ERR_clear_error();
    result->transcript = c.transcript;
    make_printable(result->error);
    if (result->stage == NULL)
        result->stage = "connect";
    if (c.status != VKS_OK)
        vks_err_set(err, c.status, "%s", result->error);
    else
        vks_err_clear(err);
    return c.status;
}

void vks_smtp_result_free(struct vks_smtp_result *result)
{
    if (result == NULL)
        return;
    free(result->transcript);
    result->transcript = NULL;
}
